"""The study's life without Ray: event writers and their reader, resume planning, the
Recorder that the Ray callback forwards to, progress and the manifest's format."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from analysis import contract as C
from rsb_tune.runner import lifecycle as L
from rsb_tune.api import Study
from rsb_tune.errors import StudyError
from rsb_tune.store.directory import StudyDir
from tests.conftest import make_config

META = {"format": C.FORMAT_VERSION, "kind": "seeds", "recipe": "A2", "metric": "val_top1", "mode": "max", "params": [], "data_sizes": {"n_val": 4, "n_v2": 0}}


@pytest.fixture
def study(tmp_path):
    s = StudyDir(tmp_path, "life")
    s.dir.mkdir(parents=True)
    L.create_study(s, META, {f"t{i}": make_config(seed=i, epochs=2) for i in range(3)})
    return s


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _result(epoch, status=C.RUNNING, **extra):
    return {"epoch": epoch, "status": status, "train_loss": 1.0 / epoch, "val_top1": 50.0 + epoch, "runtime_threads": 1, "not_a_contract_key": 1, **extra}


def test_recorder_writes_events_tables_checkpoints_and_errors(study):
    clock = Clock()
    out = io.StringIO()
    progress = L.Progress(study.name, planned=3, stream=out, clock=clock, every=30)
    recorder = L.Recorder(study, L.prepare_run(study), progress, clock=clock)
    for tid in ("t0", "t1"):
        recorder.trial_started(tid)
    assert progress.running == 2 and progress.eta() is None  # no ETA before a trial finished
    ckpt = [study.ray_dir / "run-01" / "t0" / f"checkpoint_00000{i}" for i in range(2)]
    for i, path in enumerate(ckpt):
        path.mkdir(parents=True)
        (path / C.CHECKPOINT_FILE).write_bytes(b"w")
        recorder.result("t0", _result(i + 1, C.RUNNING if i == 0 else C.OK))
        recorder.checkpoint_saved("t0", str(path))
    assert not ckpt[0].exists() and ckpt[1].exists()  # one checkpoint per trial, the newest
    clock.t += 60
    recorder.trial_failed("t1", "Traceback (most recent call last):\n  ...\nValueError: bad thing\n", final=False)
    recorder.trial_failed("t1", "Traceback ...\nRuntimeError: worse\n", final=True)
    recorder.ended()

    events = L.read_events(study, "t0")
    assert [e["type"] for e in events] == ["result", "checkpoint", "result", "checkpoint"]
    assert "not_a_contract_key" not in events[0] and all("time" in e for e in events)
    status, by_epoch, _ = L.trial_state(events)
    assert status == C.OK and sorted(by_epoch) == [1, 2]
    state, _, error = L.trial_state(L.read_events(study, "t1"))
    assert state == C.ERROR and error["error"] == "RuntimeError: worse"
    assert (study.errors_dir / "t1.txt").read_text().endswith("RuntimeError: worse\n")
    trials = pd.read_parquet(study.trials_path).set_index("trial_id")
    assert trials.status.to_dict() == {"t0": C.OK, "t1": C.ERROR} and trials.loc["t0", "val_top1"] == 52.0
    assert (progress.done, progress.failed, progress.running) == (1, 1, 0)
    assert Study(study).status().counts == {C.OK: 1, C.ERROR: 1, C.PENDING: 1}


def test_prepare_run_restarts_errors_keeps_finished_and_remembers_threads(study):
    L.record_result(study, "t0", _result(1, C.OK))
    L.record_result(study, "t1", _result(1, runtime_threads=3))
    L.record_error(study, "t1", "RuntimeError: x", final=True)
    run = L.prepare_run(study)
    assert set(run.todo) == {"t1", "t2"} and run.finished == 1
    assert run.threads == {"t1": 3}  # a trial resumes with the torch threads it started with
    assert L.read_events(study, "t1")[-1]["type"] == "restart"
    assert L.trial_state(L.read_events(study, "t1"))[0] == C.RUNNING


def test_prepare_run_of_a_search_abandons_interrupted_points(study):
    L.record_result(study, "t0", _result(1, C.OK))
    L.record_result(study, "t1", _result(1))
    run = L.prepare_run(study, searching=True)
    assert run.todo == {}
    assert L.trial_state(L.read_events(study, "t1"))[0] == C.ABANDONED
    assert L.trial_state(L.read_events(study, "t2"))[0] == C.ABANDONED
    assert L.trial_state(L.read_events(study, "t0"))[0] == C.OK


def test_stopped_only_with_early_stopping(study):
    recorder = L.Recorder(study, L.prepare_run(study), L.Progress("x", planned=3, quiet=True), early_stopping=True)
    L.record_result(study, "t0", _result(1))
    recorder.trial_completed("t0")
    assert L.trial_state(L.read_events(study, "t0"))[0] == C.STOPPED
    L.record_result(study, "t1", _result(2, C.OK))
    recorder.trial_completed("t1")  # it reported its end itself
    assert L.trial_state(L.read_events(study, "t1"))[0] == C.OK


def test_progress_plain_lines_every_30_s_planned_total_and_eta():
    clock, out = Clock(), io.StringIO()
    p = L.Progress("s", planned=10, done=2, stream=out, clock=clock, every=30)
    p.trial_started("a")
    p.trial_started("b")
    clock.t += 10
    p.tick()
    assert out.getvalue() == ""  # not a terminal: at most one line per 30 s
    clock.t += 25
    p.tick()
    first = out.getvalue().strip()
    assert first.startswith("[s] 2/10 trials done, 2 running, 0 failed") and "ETA" not in first
    p.trial_ended("a", failed=False)  # ran 35 s
    assert p.eta() == pytest.approx((0 + 6 * 35) / 2)  # b (35 s in) is due now; 6 queued, 2 slots
    clock.t += 31
    p.tick()
    assert "3/10 trials done, 1 running" in out.getvalue().splitlines()[-1] and "ETA" in out.getvalue().splitlines()[-1]
    p.close()
    p.close()
    assert len(out.getvalue().splitlines()) == 3  # the final line once


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    p = L.Progress("s", planned=4, stream=out, clock=Clock())
    import pickle

    assert pickle.loads(pickle.dumps(p)).planned == 4  # Ray pickles the callbacks that hold it
    p.trial_started("a")
    p.trial_ended("a", failed=False)
    p.close()
    assert "1/4" in out.getvalue() and "trial" in out.getvalue()


def test_format_version_is_checked(study):
    L.check_format(study, study.meta())
    L.check_format(study, {k: v for k, v in study.meta().items() if k != "format"})  # older studies: format 0
    with pytest.raises(StudyError, match="study format 99 was written by a newer rsb-tune.*reads formats 0, 1"):
        L.check_format(study, {**study.meta(), "format": 99})


def test_error_message_names_the_exception():
    assert L.error_message("Traceback\n  File x\nray.exceptions.RayTaskError(ValueError): boom\n") == "ray.exceptions.RayTaskError(ValueError): boom"
    assert L.error_message("") == "error"


def test_whether_a_driver_runs_is_read_without_taking_the_lock(tmp_path):
    import subprocess
    import sys

    from rsb_tune.store.backends import StudyLock

    path = tmp_path / ".lock"
    assert not StudyLock(path).held()  # no file yet
    mine = StudyLock(path).acquire()
    assert StudyLock(path).held()
    mine.release()
    assert not StudyLock(path).held() and path.read_text() == ""
    holder = subprocess.Popen([sys.executable, "-c", f"from rsb_tune.store.backends import StudyLock; import time; StudyLock(__import__('pathlib').Path({str(path)!r})).acquire(); print('ok', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"
        assert StudyLock(path).held()
        before = path.read_text()
        assert before.startswith(f"pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait()
    assert path.read_text() == before and not StudyLock(path).held()  # killed: its file stays, its pid is gone
