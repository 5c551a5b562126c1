"""The faults a shared cluster brings, each on real processes: a checkpoint that would run code
when loaded, a truncated checkpoint, a full disk, a study written by another version, readers
while a study writes, a node lost mid-study. Nothing finished may be lost or run twice."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import assert_user_error, events, kill_when, run_cli, start_cli, wait_running
from tests.test_resilience import assert_same_epochs, reference_epochs

NAME = "k"


def _finished(ev: dict[str, list[dict]]) -> set[str]:
    return {t for t, rows in ev.items() if any(r.get("status") == "ok" for r in rows)}


def _last_checkpoint(study: Path, trial_id: str) -> Path:
    """The state.pt of the trial's last recorded checkpoint, where the study is now."""
    path = [r["path"] for r in events(study)[trial_id] if r.get("type") == "checkpoint"][-1]
    return study / "ray" / path.split(f"/{study.name}/ray/")[-1] / "state.pt"


@pytest.fixture(scope="module")
def killed_study(tmp_path_factory):
    """A 4-seed A3 study SIGKILLed with a trial finished and an unfinished one checkpointed:
    (storage, finished trials, the unfinished checkpointed trial). Tests copy it."""
    storage = tmp_path_factory.mktemp("killed")
    proc = start_cli("seeds", "--n", "4", "--recipe", "A3", "--epochs", "3", "--storage", str(storage), "--name", NAME, "--quiet", "--executor", "ray")
    study = storage / NAME

    def ready():
        ev = events(study)
        done = _finished(ev)
        return done and any(t not in done and any(r["type"] == "checkpoint" for r in rows) for t, rows in ev.items())

    kill_when(proc, ready, "a finished and a checkpointed unfinished trial")
    ev = events(study)
    done = _finished(ev)
    cut = sorted(t for t, rows in ev.items() if t not in done and any(r["type"] == "checkpoint" for r in rows))[0]
    return storage, done, cut


def _copy(killed_study, dest: Path) -> Path:
    storage, _, _ = killed_study
    shutil.copytree(storage / NAME, dest / NAME)
    return dest / NAME


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "checkpoint not used" in line]


def _assert_completed_once(study: Path, done: set[str]) -> pd.DataFrame:
    trials = pd.read_parquet(study / "trials.parquet")
    assert len(trials) == 4 and (trials.status == "ok").all() and trials.trial_id.is_unique
    for tid in done:  # finished before the kill: not run again
        assert sum(r.get("type") == "result" for r in events(study)[tid]) == 3
    return trials


@pytest.mark.e2e
def test_checkpoint_holding_code_is_refused_and_the_study_completes(killed_study, tmp_path):
    import torch

    study = _copy(killed_study, tmp_path)
    _, done, tid = killed_study
    marker = tmp_path / "pwned"

    class Payload:  # what an attacker with write access to the study would plant
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    target = _last_checkpoint(study, tid)
    torch.save({"epoch": 1, "model": {}, "x": Payload()}, target)
    res = run_cli("resume", NAME, "--storage", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert not marker.exists()  # loading never ran it
    (line,) = _warnings(res.stderr)  # refused with one line naming the file and what it holds
    assert str(target) in line and "refused" in line and "posix.system" in line and "starts over" in line
    assert "refused" in (study / "errors" / f"{tid}.txt").read_text()
    _assert_completed_once(study, done)
    assert sum(r.get("type") == "result" and r["epoch"] == 1 for r in events(study)[tid]) == 2  # started over
    assert target.exists()  # left in place to be looked at


@pytest.mark.e2e
def test_truncated_checkpoint_falls_back_and_the_study_completes(killed_study, tmp_path, digits):
    study = _copy(killed_study, tmp_path)
    _, done, tid = killed_study
    target = _last_checkpoint(study, tid)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 3])
    res = run_cli("resume", NAME, "--storage", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    (line,) = _warnings(res.stderr)
    assert tid in line and "cut short" in line
    assert "cut short" in (study / "errors" / f"{tid}.txt").read_text()
    _assert_completed_once(study, done)
    # the trial that started over gives what an uninterrupted run gives
    assert_same_epochs(study, reference_epochs(study, digits, {tid}))
    assert len(list((study / "ray").rglob("state.pt"))) == 4  # one per trial, the cut one deleted


def test_checkpoint_load_refuses_code_and_reads_data(tmp_path):
    import numpy as np
    import torch

    from rsb_tune.training import checkpoint

    good = {"epoch": 2, "rng": {"numpy": np.random.get_state(), "torch": torch.get_rng_state()}, "w": torch.ones(3)}
    checkpoint.save(good, tmp_path / "good.pt")
    checkpoint.check(tmp_path / "good.pt")
    back = checkpoint.load(tmp_path / "good.pt")
    assert np.array_equal(back["rng"]["numpy"][1], good["rng"]["numpy"][1]) and back["rng"]["numpy"][2:] == good["rng"]["numpy"][2:]
    # an object array smuggling a callable through the allowed NumPy globals: still refused
    torch.save({"epoch": 1, "a": np.array([print, 1], dtype=object)}, tmp_path / "obj.pt")
    with pytest.raises(checkpoint.CheckpointRefused, match="ObjectDType"):
        checkpoint.load(tmp_path / "obj.pt")
    raw = (tmp_path / "good.pt").read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0xFF
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointCorrupt, match="CRC"):
        checkpoint.check(tmp_path / "flip.pt")
    for n in (0, 10, len(raw) // 2, len(raw) - 1):
        (tmp_path / "cut.pt").write_bytes(raw[:n])
        with pytest.raises(checkpoint.CheckpointCorrupt):
            checkpoint.check(tmp_path / "cut.pt")


DUPLICATES = {
    "top level": ("recipe: A3\nseeds: [0]\nrecipe: A2\ngrid:\n  lr: [1.0e-3]\n", "'recipe'", "lines 1 and 3"),
    "grid": ("recipe: A3\nseeds: [0]\ngrid:\n  lr: [1.0e-3]\n  weight_decay: [0.01]\n  lr: [2.0e-3]\n", "'lr'", "lines 4 and 6"),
    "flow mapping": ("recipe: A3\nseeds: [0]\nbase: {opt: lamb, opt: sgd}\ngrid:\n  lr: [1.0e-3]\n", "'opt'", "line 3, columns 8 and 19"),
    "third level": ("recipe: A3\nseeds: [0]\ngrid:\n  lr:\n    - 1.0e-3\n    - {a: 1, b: 2,\n       a: 3}\n", "'a'", "lines 6 and 7"),
}


@pytest.mark.parametrize("text,key,lines", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_duplicate_key_in_space_file_names_key_and_both_lines(tmp_path, text, key, lines):
    from rsb_tune.errors import ConfigError
    from rsb_tune.planning.space import load_space

    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_space(path)
    assert str(path) in str(e.value) and key in str(e.value) and lines in str(e.value) and "\n" not in str(e.value)


def test_duplicate_key_refused_by_the_cli_before_anything_is_written(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(DUPLICATES["grid"][0])
    proc = run_cli("grid", "--space", str(path), "--storage", str(tmp_path / "s"))
    assert_user_error(proc, str(path), "'lr' is given twice", "lines 4 and 6")
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- a full disk


@pytest.fixture
def small_fs(tmp_path):
    """A real 64 MiB file system (tmpfs), made and removed by the test."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    mnt = tmp_path / "small"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(fs: Path) -> Path:
    """Take every free byte of ``fs`` with one file; returns it (delete it to free the space)."""
    import errno

    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


def _assert_logs_whole(study: Path) -> None:
    for log in (study / "events").glob("*.jsonl"):
        text = log.read_text()
        assert text == "" or text.endswith("\n"), log
        for line in text.splitlines():
            json.loads(line)  # no torn or merged record
    leftovers = [p for p in study.rglob(".*.tmp*") if "ray" not in p.relative_to(study).parts]
    assert not leftovers, leftovers


def test_event_append_on_a_full_disk_leaves_the_log_whole(small_fs):
    from rsb_tune.runner import lifecycle as L
    from rsb_tune.store.directory import StudyDir

    study = StudyDir(small_fs, "s")
    study.events_dir.mkdir(parents=True)
    L.record_result(study, "t0000", {"epoch": 1, "status": "running", "val_top1": 1.0})
    with open(study.events_dir / "t0000.jsonl", "a") as f:  # a line torn by an earlier crash
        f.write('{"type": "result", "epoch": 2, "sta')
    L.record_result(study, "t0000", {"epoch": 2, "status": "running", "val_top1": 2.0})
    assert [e["epoch"] for e in L.read_events(study, "t0000")] == [1, 2]  # the torn line is skipped, not merged
    before = (study.events_dir / "t0000.jsonl").read_bytes()
    filler = fill(small_fs)
    with pytest.raises(OSError):
        L.record_result(study, "t0000", {"epoch": 3, "status": "running", "val_top1": 3.0, "v2_correct": "x" * 100000})
    assert (study.events_dir / "t0000.jsonl").read_bytes() == before  # nothing half-written stays
    filler.unlink()
    L.record_result(study, "t0000", {"epoch": 3, "status": "running", "val_top1": 3.0})
    assert [e["epoch"] for e in L.read_events(study, "t0000")] == [1, 2, 3]


@pytest.mark.e2e
def test_full_disk_stops_the_run_with_one_line_and_resume_completes_it(small_fs, digits):
    study = small_fs / "f"
    proc = start_cli("seeds", "--n", "3", "--recipe", "A3", "--epochs", "2", "--storage", str(small_fs), "--name", "f", "--quiet", "--executor", "ray")
    try:
        wait_running(proc, lambda: any(r.get("type") == "result" for rows in events(study).values() for r in rows), "a first result")
        filler = fill(small_fs)
        _, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("rsb-tune: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "rsb-tune resume f" in errors[0], err[-3000:]
    assert err.strip().splitlines()[-1] == errors[0]  # the last word (Ray logs the failed trial's traceback before)
    _assert_logs_whole(study)
    recorded = events(study)
    filler.unlink()
    res = run_cli("resume", "f", "--storage", str(small_fs), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    trials = pd.read_parquet(study / "trials.parquet")
    assert len(trials) == 3 and (trials.status == "ok").all()
    for tid, rows in recorded.items():  # what was recorded before the disk filled is still there
        assert events(study)[tid][: len(rows)] == rows
    assert_same_epochs(study, reference_epochs(study, digits))  # nothing lost, nothing different


# --------------------------------------------------------------------------- readers while a study writes

READER = r"""
import json, sys, time
from pathlib import Path
import pandas as pd
import analysis, rsb_tune
from analysis import StudyError  # the engine's StudyError is one too: this catches both

storage, name, stop = sys.argv[1], sys.argv[2], Path(sys.argv[3])
root = Path(storage) / name
reads, lengths, failures = 0, set(), []
while not stop.exists():
    for what, read in (
        ("trials.parquet", lambda: len(pd.read_parquet(open(root / "trials.parquet", "rb")))),  # one open (README)
        ("epochs.parquet", lambda: len(pd.read_parquet(open(root / "epochs.parquet", "rb")))),
        ("rsb_tune.load().trials", lambda: len(rsb_tune.load(name, storage).trials)),
        ("status", lambda: sum(rsb_tune.load(name, storage).status().counts.values())),
        ("analysis.load_study", lambda: len(analysis.load_study(root).trials)),
    ):
        try:
            n = read()
        except FileNotFoundError:
            continue  # not written yet
        except StudyError as e:
            if "not found" in str(e) or "missing" in str(e):
                continue
            failures.append(f"{what}: {e}")
            continue
        except Exception as e:
            failures.append(f"{what}: {type(e).__name__}: {e}")
            continue
        reads += 1
        if what == "trials.parquet":
            lengths.add(n)
print(json.dumps({"reads": reads, "lengths": sorted(lengths), "failures": failures[:20]}))
"""


@pytest.fixture(scope="module")
def read_while_running(tmp_path_factory):
    """A 3-seed study run while a second process reads its tables in a tight loop: (storage,
    the reader's tally, the study's stderr)."""
    import subprocess
    import sys

    storage = tmp_path_factory.mktemp("readers")
    stop = storage / "stop-reading"
    script = storage / "reader.py"
    script.write_text(READER)
    proc = start_cli("seeds", "--n", "3", "--recipe", "A3", "--epochs", "2", "--storage", str(storage), "--name", "r", "--quiet", "--executor", "ray")
    wait_running(proc, lambda: (storage / "r" / "plan.json").exists(), "the study's creation")
    reader = subprocess.Popen([sys.executable, str(script), str(storage), "r", str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    _, err = proc.communicate(timeout=900)
    stop.touch()
    out, rerr = reader.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert reader.returncode == 0, rerr[-3000:]
    return storage, json.loads(out.strip().splitlines()[-1]), err


@pytest.mark.e2e
def test_readers_never_see_a_partial_table_while_a_study_writes(read_while_running):
    storage, tally, _ = read_while_running
    assert tally["failures"] == [], tally["failures"]
    assert tally["reads"] >= 20, tally  # it did read, often, while the study ran
    assert len(tally["lengths"]) >= 2 and tally["lengths"][-1] == 3, tally  # and saw the table grow
    assert len(pd.read_parquet(storage / "r" / "trials.parquet")) == 3


# --------------------------------------------------------------------------- a study written by another version


def _with_format(src: Path, dest: Path, version) -> Path:
    """A copy of study ``src`` in ``dest`` as rsb-tune of format ``version`` wrote it
    (``None``: format 0, before the version was recorded: no ``format`` key)."""
    import yaml

    shutil.copytree(src, dest / src.name)
    meta_path = dest / src.name / "study.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta.pop("format", None)
    if version is not None:
        meta["format"] = version
        meta["versions"] = {**meta.get("versions", {}), "rsb-tune": "9.0.0"}
    meta_path.write_text(yaml.safe_dump(meta, sort_keys=False))
    return dest / src.name


@pytest.mark.e2e
def test_a_format_0_study_is_read_by_status_report_and_analysis_and_resumed(read_while_running, tmp_path):
    import analysis
    import rsb_tune

    storage, _, _ = read_while_running
    study = _with_format(storage / "r", tmp_path, None)
    proc = run_cli("status", "r", "--storage", str(tmp_path))
    assert proc.returncode == 0 and "3 ok" in proc.stdout, proc.stdout + proc.stderr
    proc = run_cli("report", "r", "--storage", str(tmp_path), "--out", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(rsb_tune.load("r", str(tmp_path)).trials) == 3
    assert len(analysis.load_study(study).trials) == 3
    res = run_cli("resume", "r", "--storage", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.e2e
def test_resume_of_a_newer_format_is_refused_with_one_line(read_while_running, tmp_path):
    storage, _, _ = read_while_running
    study = _with_format(storage / "r", tmp_path, 2)
    before = {p: p.read_bytes() for p in study.rglob("*") if p.is_file()}
    proc = run_cli("resume", "r", "--storage", str(tmp_path))
    assert_user_error(proc, "format 2", "9.0.0", "formats 0, 1", "rsb-tune 9.0.0 or newer")
    assert {p: p.read_bytes() for p in study.rglob("*") if p.is_file()} == before  # nothing touched
    assert run_cli("status", "r", "--storage", str(tmp_path)).returncode == 0  # still readable


# --------------------------------------------------------------------------- a node lost mid-study


def _running_on(study: Path, node_id: str, after: float = 0.0) -> dict | None:
    """The last result of a trial checkpointed after its first epoch (of three) and not further,
    that reported from ``node_id`` after time ``after``; None while there is none."""
    for tid, rows in sorted(events(study).items()):
        results = [r for r in rows if r.get("type") == "result"]
        if not results or any(r.get("status") == "ok" for r in results):
            continue
        last = results[-1]
        if last["epoch"] == 1 and last.get("node_id") == node_id and last["time"] > after and any(r["type"] == "checkpoint" for r in rows):
            return {"trial_id": tid, **last}
    return None


@pytest.mark.e2e
def test_node_lost_and_trial_process_killed_mid_study_lose_nothing(tmp_path, digits):
    from ray.cluster_utils import Cluster

    storage = tmp_path / "shared"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        head_id = cluster.head_node.node_id
        proc = start_cli("seeds", "--n", "5", "--recipe", "A3", "--epochs", "3", "--address", cluster.address, "--storage", str(storage), "--name", "n", "--quiet")
        study = storage / "n"
        lost = workers[0]
        hit: dict = {}
        wait_running(proc, lambda: hit.update(_running_on(study, lost.node_id) or {}) or hit, "a checkpointed trial running on the first worker node")
        done_before = _finished(events(study))
        cluster.remove_node(lost)  # the node goes away with its trial process
        import time

        removed_at = time.time()
        killed: dict = {}
        wait_running(proc, lambda: killed.update(_running_on(study, head_id, removed_at) or {}) or killed, "a checkpointed trial running on the head")
        os.kill(killed["pid"], signal.SIGKILL)  # the head's own trial process dies, the node stays
        _, err = proc.communicate(timeout=900)
    finally:
        cluster.shutdown()
    assert proc.returncode == 0, err[-3000:]
    trials = pd.read_parquet(study / "trials.parquet").set_index("trial_id")
    assert len(trials) == 5 and (trials.status == "ok").all()
    assert lost.node_id not in set(trials.node_id)  # finished elsewhere
    ev = events(study)
    for tid in (hit["trial_id"], killed["trial_id"]):
        assert trials.loc[tid, "attempts"] == 2  # retried once
        checkpointed = [r["epoch"] for r in ev[tid] if r.get("type") == "result"]
        assert checkpointed.count(1) == 1, checkpointed  # continued from its checkpoint, not from scratch
    for tid in done_before:  # finished before the loss: kept, not run again
        assert sum(r.get("type") == "result" for r in ev[tid]) == 3
    assert (trials.attempts == 1).sum() == 5 - len({hit["trial_id"], killed["trial_id"]})
    assert_same_epochs(study, reference_epochs(study, digits))  # the tables of an uninterrupted run
