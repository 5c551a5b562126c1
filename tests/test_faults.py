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

from tests.conftest import assert_user_error, run_cli
from tests.test_resilience import assert_same_epochs, events, reference_epochs, start_cli, wait_for

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
    proc = start_cli("seeds", "--n", "4", "--recipe", "A3", "--epochs", "3", "--storage", str(storage), "--name", NAME, "--quiet")
    study = storage / NAME

    def ready():
        ev = events(study)
        done = _finished(ev)
        return done and any(t not in done and any(r["type"] == "checkpoint" for r in rows) for t, rows in ev.items())

    try:
        wait_for(ready, what="a finished and a checkpointed unfinished trial")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
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

    from rsb_tune import checkpoint

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
    from rsb_tune.space import load_space

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
    from rsb_tune import lifecycle as L
    from rsb_tune.study import StudyDir

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
    proc = start_cli("seeds", "--n", "3", "--recipe", "A3", "--epochs", "2", "--storage", str(small_fs), "--name", "f", "--quiet")
    try:
        wait_for(lambda: any(r.get("type") == "result" for rows in events(study).values() for r in rows), what="a first result")
        filler = fill(small_fs)
        _, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("rsb-tune: error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "rsb-tune resume f" in errors[0], err[-3000:]
    assert "Traceback" not in err, err[-3000:]
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
