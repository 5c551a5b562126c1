"""Shared fixtures: the embedded dataset (decoded once per session) and config helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.pop("RSB_TUNE_STORAGE", None)  # the tests name their storages; a user's default never leaks in
# one numba cache for the whole session, wherever a test points RSB_TUNE_CACHE_DIR (a fresh
# cache dir per test would compile the batched augmentation's loops again: ~11 s a study)
from rsb_tune.store.backends import cache_dir  # noqa: E402 - no numba import: its cache place is set below first

os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir() / "numba"))
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits():
    from rsb_tune.data.registry import load_splits

    return load_splits("digits")


def make_config(recipe: str = "A2", **overrides):
    """A resolved trial config on the digits profile with ``overrides`` as a --set layer."""
    from rsb_tune.planning.config import Layer, resolve
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.recipes import get_recipe

    return dict(resolve(get_recipe(recipe), get_dataset("digits").profile, [Layer("test", overrides)]).values)


def write_event(study, trial_id: str, event: dict) -> None:
    """Write one event record through the lifecycle's writer of its kind (as the driver does)."""
    from rsb_tune.runner import lifecycle as L

    rest = {k: v for k, v in event.items() if k != "type"}
    kind = event["type"]
    if kind == "result":
        L.record_result(study, trial_id, rest)
    elif kind == "checkpoint":
        L.record_checkpoint(study, trial_id, rest["path"])
    elif kind == "error":
        L.record_error(study, trial_id, rest.get("error", "error"), final=bool(rest.get("final")))
    else:
        {"restart": L.record_restart, "stopped": L.record_stopped, "abandoned": L.record_abandoned}[kind](study, trial_id)


def write_minimal_study(storage: Path, name: str, *, kind: str = "seeds", started_at: str = "2026-01-01T00:00:00") -> Path:
    """A study directory that ``rsb_tune.load`` and ``list_studies`` accept: a manifest and an
    empty plan, no tables (enough to find it; nothing to analyse)."""
    import json

    import yaml

    path = storage / name
    path.mkdir(parents=True)
    (path / "study.yaml").write_text(yaml.safe_dump({"name": name, "kind": kind, "recipe": "A2", "metric": "val_top1", "mode": "max", "started_at": started_at}))
    (path / "plan.json").write_text(json.dumps({}))
    return path


def run_cli(*args: str, cwd=None, timeout: float = 600, env=None) -> subprocess.CompletedProcess:
    """``rsb-tune ARGS`` in a subprocess (the way a user runs it)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "rsb_tune", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=full_env)


def start_cli(*args: str, env=None) -> subprocess.Popen:
    """``rsb-tune ARGS`` started in a subprocess of its own process group (:func:`kill_when` kills it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "rsb_tune", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        start_new_session=True,
    )


def events(study: Path) -> dict[str, list[dict]]:
    out = {}
    for p in sorted((study / "events").glob("*.jsonl")):
        rows = []
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass
        out[p.stem] = rows
    return out


def wait_running(proc, predicate, what: str, timeout: float = 900) -> None:
    """Wait for ``predicate`` while ``proc`` runs (the machine may be shared: a long timeout)."""
    import time

    t0 = time.time()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the study ended (exit {proc.returncode}) before {what}: {proc.stderr.read()[-3000:]}")
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def kill_when(proc, predicate, what: str) -> None:
    """SIGKILL ``proc``'s process group (the driver and its trials) once ``predicate`` holds,
    as a crash would (and on any failure of the wait, so that nothing is left running)."""
    try:
        wait_running(proc, predicate, what)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit code 2, one message on stderr naming what is wrong, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


@pytest.fixture(scope="session")
def real_studies(tmp_path_factory):
    """Small real studies made once by the CLI (real Ray, real training): a 3-seed A2 study,
    a 3-seed A3 study and a 2 x 2 grid. Returns (storage, {name: CompletedProcess})."""
    storage = tmp_path_factory.mktemp("studies")
    space = storage / "g.yaml"
    space.write_text("recipe: A3\nseeds: [0]\ngrid:\n  lr: [2.0e-3, 8.0e-3]\n  weight_decay: [0.01, 0.05]\n")
    runs = {
        "s": ("seeds", "--n", "3", "--recipe", "A2", "--epochs", "2"),
        "s3": ("seeds", "--n", "3", "--recipe", "A3", "--epochs", "2"),
        "g": ("grid", "--space", str(space), "--epochs", "2"),
    }
    procs = {name: run_cli(*args, "--storage", str(storage), "--name", name) for name, args in runs.items()}
    return storage, procs


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API on localhost (moto's server), with a bucket ``rsb``: returns a function
    ``prefix -> s3://rsb/PREFIX?endpoint_override=...`` (the form users pass to --storage)."""
    import logging

    import pyarrow.fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in creds}
    os.environ.update(creds)  # inherited by the CLI subprocesses and their Ray workers
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()

    def uri(prefix: str) -> str:
        return f"s3://rsb/{prefix}?endpoint_override=http://{host}:{port}&region=us-east-1"

    fs, _ = pyarrow.fs.FileSystem.from_uri(uri("x") + "&allow_bucket_creation=true")
    fs.create_dir("rsb")
    yield uri
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def s3_files(fs, root: str) -> dict[str, int]:
    """{path under ``root``: size} of every object there."""
    import pyarrow.fs

    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root) + 1 :]: i.size for i in infos if i.type == pyarrow.fs.FileType.File}
