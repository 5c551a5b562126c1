"""Studies in an object store: a real S3 API (moto's server on localhost), the mirror, the
lease, and whole studies run, killed and resumed through ``--storage s3://...``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import time

from pathlib import Path

import pandas as pd
import pyarrow.fs
import pytest

from rsb_tune.errors import StudyError
from rsb_tune.store.backends import Lease
from rsb_tune.runner.lifecycle import Checkpoints, read_events
from rsb_tune.store.directory import StudyDir
from tests.conftest import write_event
from tests.conftest import assert_user_error, run_cli, s3_files

META = {"kind": "seeds", "recipe": "A2"}
PLAN = {"t0000": {"seed": 0}, "t0001": {"seed": 1}}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh local mirror cache, as on a machine that never saw the study."""
    path = tmp_path / "cache"
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(path))
    return path


def _remote(study: StudyDir) -> dict[str, int]:
    return s3_files(study.location.fs, study.mirror.remote)


def test_study_is_mirrored_to_the_store_and_restored_from_it(s3_server, cache, monkeypatch):
    study = StudyDir(s3_server("unit"), "m")
    study.dir.mkdir(parents=True)
    study.mirror.lease.acquire()  # held as by a driver, without its upload thread: the flushes are the test's
    study.create(META, PLAN)
    assert {"study.yaml", "plan.json", ".sync", ".lease"} <= set(_remote(study))  # create() uploads at once
    write_event(study, "t0000", {"type": "result", "epoch": 1, "status": "running"})
    assert study.mirror.flush() == 1  # only what changed
    assert study.mirror.flush() == 0
    write_event(study, "t0000", {"type": "result", "epoch": 2, "status": "ok"})
    (study.dir / "predictions").mkdir(exist_ok=True)
    (study.dir / "predictions" / "t0000.npz").write_bytes(b"x" * 10)
    assert study.mirror.flush() == 2
    study.mirror.lease.release()
    remote = _remote(study)
    assert ".lease" not in remote and remote["events/t0000.jsonl"] == (study.events_dir / "t0000.jsonl").stat().st_size

    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(cache.parent / "elsewhere"))
    again = StudyDir(s3_server("unit"), "m")
    assert again.dir != study.dir and not again.dir.exists()
    again.require()
    assert again.plan() == PLAN and again.meta()["kind"] == "seeds"
    assert [e["epoch"] for e in read_events(again, "t0000")] == [1, 2]
    assert (again.predictions_dir / "t0000.npz").read_bytes() == b"x" * 10


def test_a_driver_holds_lease_and_uploads_until_the_end(s3_server, cache):
    study = StudyDir(s3_server("unit"), "d")
    study.dir.mkdir(parents=True)
    with study.lock():
        assert ".lease" in _remote(study)  # taken before anything else
        study.create(META, PLAN)
        write_event(study, "t0000", {"type": "result", "epoch": 1, "status": "ok"})
        (study.errors_dir / "t0001.txt").write_text("Traceback ...")
        # `status` meanwhile on this machine reads the driver's copy, and must not replace it
        # with the store's older one (which lacks what the driver has not uploaded yet)
        reader = StudyDir(s3_server("unit"), "d").require()
        assert [e["epoch"] for e in read_events(reader, "t0000")] == [1] and (reader.errors_dir / "t0001.txt").exists()
    remote = _remote(study)
    assert {"events/t0000.jsonl", "errors/t0001.txt"} <= set(remote) and ".lease" not in remote


def test_changes_a_failed_upload_left_go_up_with_the_next_run(s3_server, cache, monkeypatch):
    uri = s3_server("unit")
    study = StudyDir(uri, "f")
    study.dir.mkdir(parents=True)
    study.mirror.lease.acquire()
    study.create(META, PLAN)
    write_event(study, "t0000", {"type": "result", "epoch": 1, "status": "running"})
    study.sync()
    write_event(study, "t0000", {"type": "result", "epoch": 2, "status": "ok"})  # never uploaded: the store was down
    study.mirror.lease.release()  # (its lease expired)
    with StudyDir(uri, "f").lock():  # the next run on this machine: the store has not moved on
        pass
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(cache.parent / "other-machine"))
    elsewhere = StudyDir(uri, "f").require()
    assert [e["epoch"] for e in read_events(elsewhere, "t0000")] == [1, 2]

    # ... but when another driver has moved the store on since, the store wins
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(cache))
    mine = StudyDir(uri, "f")
    write_event(mine, "t0001", {"type": "result", "epoch": 1, "status": "running"})  # unsent
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(cache.parent / "other-machine"))
    with elsewhere.lock():
        write_event(elsewhere, "t0001", {"type": "result", "epoch": 1, "status": "ok", "hostname": "other"})
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(cache))
    with mine.lock():
        assert [{k: v for k, v in e.items() if k != "time"} for e in read_events(mine, "t0001")] == [{"type": "result", "epoch": 1, "status": "ok", "hostname": "other"}]


def test_resume_finds_checkpoints_of_a_moved_study_and_deletes_leftovers(tmp_path):
    """Checkpoint paths are recorded where the study was; resume finds them where it is, and
    deletes what a killed driver left: superseded and unrecorded checkpoints (not Ray Train's)."""
    from rsb_tune.training import checkpoint
    from rsb_tune.runner.lifecycle import prepare_run

    study = StudyDir(tmp_path / "moved-here", "mv")
    study.create(META, {"t0000": {"seed": 0}, "t0001": {"seed": 1}, "t0002": {"seed": 2}})
    for rel in ("run-01/t0000/checkpoint_000000", "run-01/t0000/checkpoint_000001", "run-01/t0000/checkpoint_000002",
                "run-01/t0001/checkpoint_000003", "train/t0002/checkpoint_x"):  # fmt: skip
        (study.ray_dir / rel).mkdir(parents=True)
        checkpoint.save({"epoch": 1, "model": {}}, study.ray_dir / rel / "state.pt")  # resume checks it is whole
    was = "/data/was-here/mv/ray"
    for epoch, ckpt in ((1, "checkpoint_000000"), (2, "checkpoint_000001")):  # 000002: written as the driver died
        write_event(study, "t0000", {"type": "result", "epoch": epoch, "status": "running"})
        write_event(study, "t0000", {"type": "checkpoint", "path": f"{was}/run-01/t0000/{ckpt}"})
    write_event(study, "t0001", {"type": "result", "epoch": 1, "status": "ok"})
    write_event(study, "t0001", {"type": "checkpoint", "path": f"{was}/run-01/t0001/checkpoint_000003"})
    run = prepare_run(study)
    todo, resume_from, finished = run.todo, run.resume_from, run.finished
    assert set(todo) == {"t0000", "t0002"} and finished == 1
    assert resume_from == {"t0000": str(study.ray_dir / "run-01/t0000/checkpoint_000001")}
    left = sorted(p.parent.relative_to(study.ray_dir).as_posix() for p in study.ray_dir.rglob("state.pt"))
    assert left == ["run-01/t0000/checkpoint_000001", "run-01/t0001/checkpoint_000003", "train/t0002/checkpoint_x"]


def test_a_missing_study_and_a_stale_cache(s3_server, cache):
    with pytest.raises(StudyError, match="no study 'nope'"):
        StudyDir(s3_server("unit"), "nope").require()
    # a cached copy of a study the store no longer has is dropped, never uploaded as a new one
    study = StudyDir(s3_server("unit"), "stale")
    study.events_dir.mkdir(parents=True)
    (study.events_dir / "t0000.jsonl").write_text('{"type": "result", "epoch": 9}\n')
    with study.lock():
        assert not (study.events_dir / "t0000.jsonl").exists()
        study.create(META, PLAN)
    assert "events/t0000.jsonl" not in _remote(study)


def test_sqlite_is_uploaded_as_a_consistent_snapshot(s3_server, cache, monkeypatch):
    study = StudyDir(s3_server("unit"), "db")
    study.dir.mkdir(parents=True)
    with study.lock():
        study.create(META, PLAN)
        con = sqlite3.connect(study.dir / "optuna.db")
        con.execute("create table t (x)")
        con.executemany("insert into t values (?)", [(i,) for i in range(100)])
        con.commit()
        study.sync()
        con.execute("insert into t values (100)")  # open connection, uncommitted: not in the snapshot
        study.sync()
        con.close()
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(cache.parent / "other"))
    copy = StudyDir(s3_server("unit"), "db").require()
    with sqlite3.connect(copy.dir / "optuna.db") as con:
        assert con.execute("select count(*) from t").fetchone() == (100,)


def test_lease_refuses_a_second_driver_and_takes_over_a_dead_one(s3_server, cache):
    study = StudyDir(s3_server("unit"), "lease")
    fs, path = study.location.fs, f"{study.mirror.remote}/.lease"
    first = Lease(fs, path, "lease").acquire()
    with pytest.raises(StudyError, match=r"already running \(pid \d+ on "):
        Lease(fs, path, "lease").acquire()
    assert Lease(fs, path, "lease", ttl=0).acquire().held  # expired: taken over
    first.held = False  # (it lost the lease; releasing it must not delete the new holder's)
    # a holder on this host whose process is gone is taken over at once
    with fs.open_output_stream(path) as f:
        f.write(json.dumps({"token": "x", "host": socket.gethostname(), "pid": 2**22 + 12345}).encode())
    assert Lease(fs, path, "lease").acquire().held
    # one on another host is not
    with fs.open_output_stream(path) as f:
        f.write(json.dumps({"token": "x", "host": "elsewhere", "pid": 1}).encode())
    with pytest.raises(StudyError, match="on elsewhere"):
        Lease(fs, path, "lease").acquire()


def test_superseded_checkpoint_is_deleted_only_after_the_upload(s3_server, cache):
    study = StudyDir(s3_server("unit"), "ck")
    study.dir.mkdir(parents=True)
    old, new = (f"{Checkpoints(study).storage()[0]}/run-01/t0000/checkpoint_00000{i}" for i in (0, 1))
    for path in (old, new):
        with study.location.fs.open_output_stream(f"{path}/state.pt") as f:
            f.write(b"weights")
    assert Checkpoints(study).dirs_with() == {"run-01/t0000/checkpoint_000000", "run-01/t0000/checkpoint_000001"}
    assert Checkpoints(study).runs() == ["run-01"]
    study.mirror.lease.acquire()  # no upload thread: the test says when to flush
    study.create(META, PLAN)
    write_event(study, "t0000", {"type": "checkpoint", "path": new})
    Checkpoints(study).discard(old)
    assert "run-01/t0000/checkpoint_000000" in Checkpoints(study).dirs_with()  # the new record is not uploaded yet
    assert "events/t0000.jsonl" not in _remote(study)
    study.sync()
    assert "events/t0000.jsonl" in _remote(study)
    assert Checkpoints(study).dirs_with() == {"run-01/t0000/checkpoint_000001"}


def test_bad_object_store_storage_is_one_line_exit_2(tmp_path, s3_server, cache):
    proc = run_cli("seeds", "--n", "1", "--storage", "foo://bucket/x", cwd=tmp_path)
    assert_user_error(proc, "--storage foo://bucket/x", "Unrecognized filesystem")
    t0 = time.time()
    proc = run_cli("seeds", "--n", "1", "--storage", "s3://rsb/x?endpoint_override=http://127.0.0.1:9&region=us-east-1", cwd=tmp_path)
    assert_user_error(proc, "--storage s3://rsb/x", "cannot write there")
    assert time.time() - t0 < 60
    proc = run_cli("status", "nope", "--storage", s3_server("cli"), cwd=tmp_path)
    assert_user_error(proc, "no study 'nope' in s3://rsb/cli")
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a cache


@pytest.mark.e2e
def test_study_in_s3_is_killed_resumed_elsewhere_and_reported(tmp_path, s3_server, cache, monkeypatch, digits):
    """The driver is SIGKILLed, its machine's cache is lost, and the study resumes from the
    store alone: finished trials kept, unfinished ones continued, equal to an uninterrupted run."""
    from tests.conftest import events, start_cli
    from tests.test_resilience import assert_same_epochs, reference_epochs, wait_for

    uri = s3_server("e2e")
    proc = start_cli("seeds", "--n", "3", "--recipe", "A2", "--epochs", "6", "--max-concurrent", "1", "--storage", uri, "--name", "k", "--quiet")
    fs, root = pyarrow.fs.FileSystem.from_uri(uri)

    def in_store() -> dict[str, list[dict]]:
        """The study's event logs as the store has them now."""
        infos = fs.get_file_info(pyarrow.fs.FileSelector(f"{root}/k/events", allow_not_found=True))
        out = {}
        for info in infos:
            with fs.open_input_stream(info.path) as f:
                out[Path(info.path).stem] = [json.loads(line) for line in f.read().decode().splitlines() if line.endswith("}")]
        return out

    def one_done_one_checkpointed():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        ev = in_store()
        done = [t for t, rows in ev.items() if any(r.get("status") == "ok" for r in rows)]
        return done and len(done) < 3 and any(t not in done and any(r["type"] == "checkpoint" for r in rows) for t, rows in ev.items())

    try:
        wait_for(one_done_one_checkpointed, what="a finished trial and a running one with a checkpoint, in the store")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    shutil.rmtree(cache)  # the driver's machine is gone: only the store remains
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(tmp_path / "cache2"))
    study = StudyDir(uri, "k").require()
    before = events(study.dir)
    finished_before = {t for t, rows in before.items() if any(r.get("status") == "ok" for r in rows)}
    assert finished_before, "a finished trial was not in the store when its driver died"
    checkpointed = {t for t, rows in before.items() if t not in finished_before and any(r["type"] == "checkpoint" for r in rows)}
    assert checkpointed, "a running trial's checkpoint record was not in the store"

    res = run_cli("resume", "k", "--storage", uri, "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "s3://rsb/e2e/k" in res.stderr
    study = StudyDir(uri, "k").require()  # what the store holds now
    trials = pd.read_parquet(study.trials_path)
    assert len(trials) == 3 and (trials.status == "ok").all()
    for tid in finished_before:  # not run again
        assert sum(r.get("type") == "result" for r in events(study.dir)[tid]) == 6
    for tid in checkpointed:  # continued from the checkpoint in the store, not from scratch
        assert sum(r.get("type") == "result" and r["epoch"] == 1 for r in events(study.dir)[tid]) == 1
    assert_same_epochs(study.dir, reference_epochs(study.dir, digits))
    remote = _remote(study)
    prefix = f"{Checkpoints(study).storage()[0]}/"
    for tid, rows in events(study.dir).items():  # the newest checkpoint is kept, superseded ones deleted
        recorded = [r["path"][len(prefix) :] for r in rows if r.get("type") == "checkpoint"]
        assert f"ray/{recorded[-1]}/state.pt" in remote
        assert not [c for c in recorded[:-1] if f"ray/{c}/state.pt" in remote], tid
    assert sum(p.endswith("/state.pt") for p in remote) == 3  # also those written as the driver died
    assert ".lease" not in remote

    rep = run_cli("report", "k", "--storage", uri)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "report/index.html" in _remote(study) and "report uploaded to s3://rsb/e2e/k/report" in rep.stdout


def test_a_store_that_never_answers_fails_in_seconds(tmp_path, cache):
    """A TCP port that accepts connections and never answers: the user hears in seconds, not
    after the client's retries (up to 15 minutes for GCS)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    uri = f"s3://rsb/x?endpoint_override=http://127.0.0.1:{silent.getsockname()[1]}&region=us-east-1"
    try:
        for args in (("seeds", "--n", "1"), ("status", "s")):
            t0 = time.time()
            proc = run_cli(*args, "--storage", uri, cwd=tmp_path, env={"RSB_TUNE_STORE_TIMEOUT_S": "3"})
            assert_user_error(proc, "no answer within 3 s")
            assert time.time() - t0 < 45
    finally:
        silent.close()
    assert list(tmp_path.iterdir()) == []


def test_study_run_elsewhere_is_refused_and_leaves_nothing(tmp_path, s3_server, cache):
    import pyarrow.fs

    uri = s3_server("held")
    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    with fs.open_output_stream(f"{root}/h/.lease") as f:  # a driver on another machine runs study h
        f.write(json.dumps({"token": "x", "host": "gpu-node-7", "pid": 4242}).encode())
    proc = run_cli("seeds", "--n", "1", "--epochs", "1", "--storage", uri, "--name", "h", cwd=tmp_path)
    assert_user_error(proc, "study 'h' is already running (pid 4242 on gpu-node-7")
    assert not StudyDir(uri, "h").dir.exists()
    assert set(s3_files(fs, f"{root}/h")) == {".lease"}


@pytest.mark.e2e
def test_study_in_s3_is_evaluated_and_fine_tuned(tmp_path, s3_server, cache, monkeypatch):
    """``eval`` and ``finetune --from`` of a study in the store: the final checkpoints fetched
    (only those), evals.parquet uploaded under the study's lease, and each fine-tune trial reads
    its source trial's weights from the store itself."""
    import numpy as np

    import rsb_tune
    from analysis import contract as C

    uri = s3_server("ev")
    src = run_cli("seeds", "--n", "2", "--epochs", "1", "--storage", uri, "--name", "s", "--quiet")
    assert src.returncode == 0, src.stderr[-3000:]
    ev = run_cli("eval", "s", "--storage", uri, "--executor", "local", "--quiet", "--test-size", "28", "32", "--split", "val", "v2")
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "evals: s3://rsb/ev/s/evals.parquet (8 rows)" in ev.stdout, ev.stdout
    fs, root = pyarrow.fs.FileSystem.from_uri(uri)
    remote = s3_files(fs, f"{root}/s")
    assert "evals.parquet" in remote and ".lease" not in remote
    assert sum(p.endswith("/state.pt") for p in remote) == 2  # Ray's checkpoints only: nothing uploaded back
    # read back from the store alone, on a machine that never saw the study
    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(tmp_path / "elsewhere"))
    study = rsb_tune.load("s", storage=uri)
    evals, trials = study.evals, study.trials.set_index("trial_id")
    assert len(evals) == 2 * 2 * 2 and not evals.duplicated(list(C.EVAL_KEY)).any()
    own = evals[evals["trained"].astype(bool)]
    assert len(own) == 4
    for row in own.itertuples():  # the training setting reproduces the recorded scores
        assert row.top1 == trials.loc[row.trial_id, f"{row.test_set}_top1"] and row.loss == trials.loc[row.trial_id, f"{row.test_set}_loss"]
    # a job on a node without the driver's downloaded copy reads the checkpoint from the store
    from rsb_tune.runner.evaluation import eval_grid, eval_job, final_checkpoint, load_eval_data
    from rsb_tune.training.evaluate import Setting

    cfg = {**study.plan["t0000"], "threads": int(trials.loc["t0000", "runtime_threads"])}
    remote_dir = final_checkpoint(study.directory, "t0000")
    absent = str(study.path / "ray" / "not-here")
    (row,) = eval_job(cfg, (absent, study.directory.location.uri(remote_dir)), "t0000", [("val", Setting(32, 0.95))], load_eval_data(study.directory, eval_grid()))
    assert row["top1"] == trials.loc["t0000", "val_top1"]
    # fine-tuned from the store: trial i from source trial i's final checkpoint there
    ft = run_cli("finetune", "--from", "s", "--epochs", "1", "--storage", uri, "--name", "f", "--quiet")
    assert ft.returncode == 0, ft.stderr[-3000:]
    f = rsb_tune.load("f", storage=uri)
    assert (f.trials["status"] == C.OK).all() and len(f.trials) == 2
    lineage = f.meta["finetune_from"]["trials"]
    for tid, cfg in f.plan.items():
        assert cfg["init_from"]["checkpoint"] == lineage[tid]["checkpoint"]
        assert cfg["init_from"]["checkpoint"].startswith(f"s3://{root}/s/ray/") and "endpoint_override=" in cfg["init_from"]["checkpoint"]
    from rsb_tune.runner.evaluation import final_checkpoint
    from rsb_tune.training import checkpoint
    from rsb_tune.training.trial import initial_model

    with fs.open_input_stream(f"{final_checkpoint(study.directory, 't0001')}/{C.CHECKPOINT_FILE}") as fh:
        (tmp_path / "source.pt").write_bytes(fh.read())
    source = checkpoint.weights_of(checkpoint.load(tmp_path / "source.pt"), "t0001")
    start = initial_model(f.plan["t0001"], 2).state_dict()
    body = [k for k in start if not k.startswith("fc.")]
    assert body and all(np.array_equal(start[k].numpy(), source[k].numpy()) for k in body)
