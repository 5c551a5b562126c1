"""The runner hands trials to an executor: Ray's, or the in-process one. The same study through
both gives the same tables bit for bit (the timings and Ray's node id aside), the in-process one
starts no Ray, retries a failing trial from its checkpoint, and refuses what needs Ray."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import rsb_tune
from rsb_tune.errors import ConfigError
from tests.conftest import REPO, run_cli

TIMING = {"run_time_s", "epoch_time_s", "images_per_s", "node_id"}


def _tables(storage, name):
    return pd.read_parquet(storage / name / "trials.parquet"), pd.read_parquet(storage / name / "epochs.parquet")


def _assert_same(a, b, also=()):
    for x, y in zip(a, b):
        assert list(x.columns) == list(y.columns)
        same = [c for c in x.columns if c not in TIMING and c not in also]
        pd.testing.assert_frame_equal(x[same], y[same], check_exact=True)


@pytest.mark.e2e
def test_a_study_through_the_local_executor_equals_ray_bit_for_bit_and_starts_no_ray(real_studies, tmp_path):
    """"s3" of real_studies ran with the default executor (auto: local, a pool of processes on a
    machine of 2+ CPUs); here the same study in this process (one slot) and through Ray."""
    storage, procs = real_studies  # "s3": rsb-tune seeds --n 3 --recipe A3 --epochs 2
    assert procs["s3"].returncode == 0, procs["s3"].stderr[-2000:]
    code = (
        "import sys, rsb_tune; "
        f"rsb_tune.seeds(3, 'A3', epochs=2, storage={str(tmp_path / 'local')!r}, name='s3', executor='local', max_concurrent=1, quiet=True); "
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))[:3]); "
        f"rsb_tune.seeds(3, 'A3', epochs=2, storage={str(tmp_path / 'ray')!r}, name='s3', executor='ray', quiet=True)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", "the local executor imported Ray"
    _assert_same(_tables(tmp_path / "ray", "s3"), _tables(tmp_path / "local", "s3"))
    _assert_same(_tables(tmp_path / "ray", "s3"), _tables(storage, "s3"))
    assert rsb_tune.load("s3", storage=str(tmp_path / "local")).meta["run_options"]["executor"] == "local"
    auto = rsb_tune.load("s3", storage=str(storage)).meta["run_options"]
    assert auto["executor"] == "local" and auto["executor_rule"].startswith("auto: nothing needs Ray"), auto
    assert "study s3: executor local (auto: nothing needs Ray" in procs["s3"].stderr


@pytest.mark.e2e
def test_the_local_executor_retries_a_failing_trial_from_its_checkpoint(tmp_path):
    clean = run_cli("seeds", "--n", "2", "--recipe", "A3", "--epochs", "2", "--executor", "local", "--quiet", "--storage", str(tmp_path), "--name", "clean")
    assert clean.returncode == 0, clean.stderr[-2000:]
    import os

    env = {**os.environ, "RSB_TUNE_FAULTS": "t0001@1:raise-once"}
    faulty = run_cli("seeds", "--n", "2", "--recipe", "A3", "--epochs", "2", "--executor", "local", "--quiet", "--storage", str(tmp_path), "--name", "faulty", env=env)
    assert faulty.returncode == 0, faulty.stderr[-2000:]
    events = (tmp_path / "faulty" / "events" / "t0001.jsonl").read_text()
    assert '"type": "error"' in events and '"final": false' in events  # failed once, then went on
    _assert_same(_tables(tmp_path, "clean"), _tables(tmp_path, "faulty"), also={"attempts"})  # from its checkpoint: the same run
    assert _tables(tmp_path, "faulty")[0]["attempts"].tolist() == [1, 2]


@pytest.mark.e2e
def test_a_pool_worker_killed_from_outside_is_retried_from_its_checkpoint(tmp_path):
    import json
    import os
    import signal
    import time

    args = ("seeds", "--n", "2", "--recipe", "A2", "--epochs", "4", "--executor", "local", "--max-concurrent", "2", "--quiet", "--storage", str(tmp_path), "--name", "w")
    proc = subprocess.Popen([sys.executable, "-m", "rsb_tune", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    log, pid, t0 = tmp_path / "w" / "events" / "t0000.jsonl", None, time.time()
    while pid is None and time.time() - t0 < 240 and proc.poll() is None:
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        pid = next((r["pid"] for r in rows if r.get("type") == "result" and r.get("status") == "running"), None)
        time.sleep(0.1)
    assert pid is not None and pid != proc.pid, "no running trial in a worker process"
    os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    trials = _tables(tmp_path, "w")[0]
    assert trials.status.tolist() == ["ok", "ok"] and trials.attempts.tolist() == [2, 1] and trials.epochs_done.tolist() == [4, 4]


def test_the_local_executor_refuses_what_needs_ray(tmp_path):
    space = tmp_path / "search.yaml"
    space.write_text("recipe: A3\nseeds: [0]\nsearch: optuna\nnum_samples: 2\nparams:\n  lr: {loguniform: [1.0e-3, 1.0e-2]}\n")
    with pytest.raises(ConfigError, match="executor='local'.*a search.*executor='ray'"):
        rsb_tune.grid(str(space), epochs=1, storage=str(tmp_path), name="search", executor="local", quiet=True)
    with pytest.raises(ConfigError, match="address.*needs Ray"):
        rsb_tune.seeds(2, "A3", epochs=1, storage=str(tmp_path), executor="local", address="auto")
    with pytest.raises(ConfigError, match="unknown executor"):
        rsb_tune.seeds(2, "A3", epochs=1, storage=str(tmp_path), executor="dask")


class _Study:
    """What needs_ray reads of a study: its manifest and whether it lives in an object store."""

    def __init__(self, meta, mirror=None):
        self._meta, self.mirror = meta, mirror

    def meta(self):
        return self._meta


@pytest.mark.parametrize(
    ("meta", "options", "search", "needle"),
    [
        ({}, {}, None, None),
        ({}, {"max_concurrent": 1}, None, None),
        ({}, {"address": "auto"}, None, "--address"),
        ({}, {"tracking": ("mlflow",)}, None, "--tracking"),
        ({}, {}, ("space", "resolver"), "a search"),
        ({"space": {"scheduler": "asha"}}, {}, None, "asha"),
        ({"base_config": {"workers_per_trial": 2}}, {}, None, "data-parallel"),
        ({"base_config": {"pack": 4}}, {}, None, "packed seeds"),
    ],
)
def test_one_list_says_what_needs_ray(meta, options, search, needle):
    from rsb_tune.options import run_options
    from rsb_tune.runner.executor import needs_ray

    why = needs_ray(_Study(meta), run_options(options), search=search)
    assert (why is None) if needle is None else (needle in why), why
    assert "object store" in needs_ray(_Study({}, mirror=object()), run_options({}))


def test_auto_takes_ray_where_the_run_needs_it(tmp_path):
    """--address: auto checks it as Ray does (fails fast, before anything is written)."""
    from rsb_tune.errors import UserError

    with pytest.raises(UserError, match="--address 127.0.0.1:9: cannot reach a Ray cluster"):
        rsb_tune.seeds(2, "A3", epochs=1, storage=str(tmp_path), address="127.0.0.1:9", quiet=True)
    assert not any(tmp_path.iterdir())


def test_the_cli_names_the_executor_flag(tmp_path):
    proc = run_cli("seeds", "--n", "2", "--epochs", "1", "--executor", "local", "--address", "auto", "--storage", str(tmp_path))
    assert proc.returncode == 2 and "--address: needs Ray" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
