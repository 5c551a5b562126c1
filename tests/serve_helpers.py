"""Helpers of the study-browser tests: synthetic studies written through the engine's own
Study and results code, and a real ``rsb-tune serve`` subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

SECRET_DIR = "/home/alice-secret/datasets/imagenette"  # a server path that must never show


def study_files(storage: Path, name: str):
    """The engine's object for a study directory."""
    from rsb_tune.store.directory import StudyDir

    return StudyDir(storage, name)


def append_event(storage: Path, name: str, trial_id: str, event: dict) -> None:
    """One event record of a trial, written by the lifecycle's writer of its kind."""
    from tests.conftest import write_event

    write_event(study_files(storage, name), trial_id, event)


def rebuild_tables(storage: Path, name: str) -> None:
    """trials.parquet and epochs.parquet rebuilt from the event logs by the engine's own code."""
    from rsb_tune.store.tables import write_tables

    write_tables(study_files(storage, name))


def make_study(storage: Path, name: str, *, kind: str = "seeds", n: int = 4, epochs: int = 2, params=(), statuses=None, started_at=None, finished: bool = True):
    """A study written with the engine's Study/results code from synthetic events: ``n`` trials
    (``statuses[i]``: ok, error, running or pending), val/v2 top-1 rising along the epochs."""
    statuses = list(statuses or ["ok"] * n)
    grid = [{"lr": lr, "weight_decay": wd} for lr in (1e-3, 5e-3) for wd in (0.01, 0.05)]
    plan = {}
    for i in range(n):
        cfg = {"seed": i % 2 if kind == "grid" else i, "model_seed": 100 + i, "data_seed": 200 + i, "aug_seed": 300 + i, "epochs": epochs, "lr": 5e-3, "weight_decay": 0.02, "data_path": SECRET_DIR}
        if kind == "grid":
            cfg.update(grid[(i // 2) % len(grid)])
        plan[f"t{i:04d}"] = cfg
    meta = {
        "kind": kind,
        "recipe": "A2",
        "metric": "val_top1",
        "mode": "max",
        "params": list(params),
        "command": f"rsb-tune {kind} --n {n} --data {SECRET_DIR} --storage {storage}",
        "dataset": "folder",
        "data_sizes": {"n_val": 200, "n_v2": 100},
        "space_file": f"{SECRET_DIR}/space.yaml" if kind == "grid" else None,
    }
    study = study_files(storage, name)
    study.create(meta, plan)
    if started_at:
        study.update_meta(started_at=started_at)
    t0 = time.time() - 100
    for i, (tid, cfg) in enumerate(plan.items()):
        status = statuses[i]
        if status == "pending":
            continue
        last = epochs if status in ("ok", "error") else 1
        for e in range(1, last + 1):
            val = 20.0 + 10 * e + (i * 7 % 5) + 100 * cfg["lr"]
            ev = {"type": "result", "time": t0 + i * 5 + e, "epoch": e, "val_top1": val, "v2_top1": val - 3 - (i % 3), "val_loss": 2.0 - 0.1 * e, "epoch_time_s": 1.0, "status": "ok" if (e == epochs and status == "ok") else "running"}
            append_event(storage, name, tid, ev)
        if status == "error":
            append_event(storage, name, tid, {"type": "error", "final": True, "error": f'RuntimeError: CUDA out of memory in File "{SECRET_DIR}/x.py"', "time": t0 + i * 5 + 9})
    rebuild_tables(storage, name)
    if finished:
        study.update_meta(ended_at="2026-12-01T12:00:00+00:00")
    return study


class Server:
    """``python -m rsb_tune serve`` in a subprocess on a free port (the way a user starts it)."""

    def __init__(self, storage, *args: str, env=None):
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rsb_tune", "serve", "--storage", str(storage), "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
        )  # fmt: skip
        line = self.proc.stdout.readline()
        m = re.search(r"http://([\d.]+):(\d+)/", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"serve did not start: {line!r} {self.proc.stderr.read()}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_get(host: str, port: int, target: str) -> tuple[int, bytes]:
    """GET ``target`` byte for byte (no client-side normalisation of '..' or '%2f')."""
    import socket

    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data
