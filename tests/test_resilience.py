"""Studies that survive: real processes killed, faults injected, resumed, compared bit for bit."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from rsb_tune.store.backends import StudyLock
from tests.conftest import assert_user_error, events, run_cli, start_cli

pytestmark = pytest.mark.e2e
METRICS = ["train_loss", "lr", "val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss"]


def wait_for(predicate, timeout=240, what="condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def reference_epochs(study: Path, digits, trial_ids=None) -> pd.DataFrame:
    """The uninterrupted run of the same plan, in-process (equal to inside Ray: test_e2e)."""
    from rsb_tune.training.trial import train

    plan = json.loads((study / "plan.json").read_text())
    rows = []
    for tid, cfg in plan.items():
        if trial_ids is None or tid in trial_ids:
            train(cfg, lambda m, checkpoint=None, tid=tid: rows.append({"trial_id": tid, **{k: m[k] for k in ["epoch", *METRICS]}}), digits)
    return pd.DataFrame(rows)


def assert_same_epochs(study: Path, reference: pd.DataFrame) -> None:
    got = pd.read_parquet(study / "epochs.parquet")
    got = got[got.trial_id.isin(reference.trial_id)][["trial_id", "epoch", *METRICS]].reset_index(drop=True)
    ref = reference.sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, ref, check_exact=True, check_dtype=False)


def test_sigkill_driver_then_resume_is_bit_identical(tmp_path, digits):
    args = ["seeds", "--n", "4", "--recipe", "A2", "--epochs", "3", "--storage", str(tmp_path), "--name", "k", "--quiet"]
    proc = start_cli(*args)
    study = tmp_path / "k"

    def one_done_one_running():
        ev = events(study)
        done = [t for t, rows in ev.items() if any(r.get("status") == "ok" for r in rows)]
        running = [t for t, rows in ev.items() if t not in done and any(r.get("type") == "result" for r in rows)]
        return done and running

    try:
        wait_for(one_done_one_running, what="a finished and a running trial")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = events(study)
    finished_before = {t for t, rows in before.items() if any(r.get("status") == "ok" for r in rows)}
    checkpointed = {t for t, rows in before.items() if t not in finished_before and any(r["type"] == "checkpoint" for r in rows)}
    res = run_cli("resume", "k", "--storage", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    trials = pd.read_parquet(study / "trials.parquet")
    assert len(trials) == 4 and (trials.status == "ok").all() and trials.trial_id.is_unique
    for tid in finished_before:  # finished trials were not run again
        assert sum(r.get("type") == "result" for r in events(study)[tid]) == 3
    for tid in checkpointed:  # continued from their checkpoint, not from scratch
        assert sum(r.get("type") == "result" and r["epoch"] == 1 for r in events(study)[tid]) == 1
    ckpts = [p for p in (study / "ray").rglob("state.pt")]
    assert len(ckpts) == 4, ckpts  # one per trial: superseded ones deleted, also those the kill left
    assert_same_epochs(study, reference_epochs(study, digits))


def test_failures_retry_error_and_divergence(tmp_path, digits):
    space = tmp_path / "faults.yaml"
    space.write_text("recipe: A3\nseeds: [0]\nbase: {opt: sgd, warmup_epochs: 0, momentum: 0.9}\ngrid:\n  lr: [0.05, 0.1, 0.2, 1.0e+12]\n")
    faults = "t0001@2:raise-once,t0002@1:raise"
    proc = run_cli("grid", "--space", str(space), "--epochs", "3", "--max-failures", "1", "--storage", str(tmp_path), "--name", "f", "--quiet", "--executor", "ray", env={"RSB_TUNE_FAULTS": faults})
    assert proc.returncode == 1, proc.stderr[-3000:]  # one trial ended in error
    assert "2 ok, 1 diverged, 1 error" in proc.stderr
    trials = pd.read_parquet(tmp_path / "f" / "trials.parquet").set_index("trial_id")
    assert trials.status.to_dict() == {"t0000": "ok", "t0001": "ok", "t0002": "error", "t0003": "diverged"}
    assert trials.loc["t0001", "attempts"] == 2 and trials.loc["t0002", "attempts"] == 2
    assert "injected fault in t0002" in trials.loc["t0002", "error"]
    errs = [e for e in events(tmp_path / "f")["t0002"] if e["type"] == "error"]  # the retried failure too
    assert [e["final"] for e in errs] == [False, True] and all("injected fault in t0002" in e["error"] for e in errs)
    assert "RuntimeError: injected fault" in (tmp_path / "f" / "errors" / "t0002.txt").read_text()
    ep = pd.read_parquet(tmp_path / "f" / "epochs.parquet")
    assert not ep.duplicated(["trial_id", "epoch"]).any()
    # the retried trial continued from its checkpoint and matches an uninterrupted run exactly
    assert_same_epochs(tmp_path / "f", reference_epochs(tmp_path / "f", digits, {"t0001"}))


def test_trial_killed_from_outside_is_retried(tmp_path):
    proc = start_cli("seeds", "--n", "1", "--recipe", "A2", "--epochs", "4", "--storage", str(tmp_path), "--name", "w", "--quiet", "--executor", "ray")
    study = tmp_path / "w"
    wait_for(lambda: any(r.get("type") == "result" and r.get("status") == "running" for r in events(study).get("t0000", [])), what="a running trial")
    pid = next(r["pid"] for r in events(study)["t0000"] if r.get("type") == "result")
    os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    trials = pd.read_parquet(study / "trials.parquet")
    assert trials.status.tolist() == ["ok"] and trials.attempts.tolist() == [2] and trials.epochs_done.tolist() == [4]


def test_ctrl_c_stops_cleanly_exits_130_and_resumes(tmp_path):
    proc = start_cli("seeds", "--n", "3", "--recipe", "A2", "--epochs", "3", "--storage", str(tmp_path), "--name", "c", "--quiet", "--executor", "ray")
    study = tmp_path / "c"
    wait_for(lambda: any(rows for rows in events(study).values()), what="a first result")
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err[-3000:]
    assert "rsb-tune resume c" in err and "Traceback" not in err
    res = run_cli("resume", "c", "--storage", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (pd.read_parquet(study / "trials.parquet").status == "ok").sum() == 3


def test_concurrent_studies(tmp_path):
    common = ["seeds", "--n", "2", "--recipe", "A3", "--epochs", "2", "--storage", str(tmp_path), "--quiet"]
    a = start_cli(*common, "--name", "a")
    b = start_cli(*common, "--name", "b")
    # a's driver holds its lock (not a fixed sleep: on a loaded machine its start takes longer)
    wait_for(lambda: StudyLock(tmp_path / "a" / ".lock").held(), timeout=180, what="study a's lock")
    a2 = start_cli(*common, "--name", "a")  # same name at the same time: refused
    _, err2 = a2.communicate(timeout=300)
    assert a2.returncode == 2 and "already running" in err2 and "Traceback" not in err2
    for p in (a, b):
        _, err = p.communicate(timeout=400)
        assert p.returncode == 0, err[-3000:]
    for name in ("a", "b"):
        trials = pd.read_parquet(tmp_path / name / "trials.parquet")
        assert len(trials) == 2 and (trials.status == "ok").all()
        assert len(pd.read_parquet(tmp_path / name / "epochs.parquet")) == 4


@pytest.mark.parametrize("which,content", [("study.yaml", "kind: [unclosed"), ("plan.json", "{not json"), ("study.yaml", "- just\n- a list\n")])
def test_corrupt_study_files_are_named(tmp_path, which, content):
    study = tmp_path / "s"
    study.mkdir()
    (study / "study.yaml").write_text("kind: seeds\nname: s\n")
    (study / "plan.json").write_text("{}")
    (study / which).write_text(content)
    before = {p.name: p.read_text() for p in study.iterdir()}
    for cmd in ("status", "resume", "report"):
        proc = run_cli(cmd, "s", "--storage", str(tmp_path))
        assert_user_error(proc, str(study / which), "corrupt")
    assert {p.name: p.read_text() for p in study.iterdir()} == before


def test_unreachable_address_fails_fast(tmp_path):
    t0 = time.time()
    proc = run_cli("seeds", "--n", "1", "--address", "127.0.0.1:9", "--storage", str(tmp_path / "s"))
    assert_user_error(proc, "--address 127.0.0.1:9", "cannot reach")
    assert time.time() - t0 < 60 and not (tmp_path / "s").exists()
