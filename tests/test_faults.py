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
