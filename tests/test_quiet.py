"""Quiet means quiet: with ``--quiet`` a real study through the CLI shows the tool's own lines
only, none of Ray's (its C++ logs, the workers' forwarded output, its warnings)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_cli

# the prefixes of Ray's lines: absl's raw logs ("[mutex.cc : 452] RAW: Lock blocking"), Ray's
# C++ logs ("[2026-12-05 ... I 123 456] core_worker.cc:..."), forwarded worker output
# ("(raylet)", "(TrainTrainable pid=...)"), its Python warnings and the SIGTERM dumps
RAY_LINE = re.compile(
    r"RAW:|\[mutex\.cc|\(raylet\)|\(\w+ pid=\d+|pid=\d+\)|WARNING \w+\.py|INFO \w+\.py|\.cc:\d+|\*\*\* SIGTERM|"
    r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
)


@pytest.mark.e2e
def test_quiet_run_shows_no_ray_lines(tmp_path) -> None:
    proc = run_cli("seeds", "--n", "1", "--recipe", "A3", "--epochs", "1", "--quiet", "--storage", str(tmp_path), "--name", "q", "--executor", "ray")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    ray = [line for line in lines if RAY_LINE.search(line)]
    assert not ray, ray
    # only the tool's own lines: the study's start and its summary
    assert lines[0].startswith("study q:") and any("1 ok" in line for line in lines), lines
    assert all(line.startswith(("study q", "  ")) for line in lines), lines


def test_ray_s_stack_dumps_are_off_unless_asked_for(monkeypatch) -> None:
    """Stopping a notebook kernel (SIGTERM) dumps no stacks: absl's handler is off by default,
    and a user's own setting wins."""
    from rsb_tune.runner import ray_executor

    monkeypatch.delenv("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", raising=False)
    ray_executor._set_ray_env()
    import os

    assert os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] == "1"
    monkeypatch.setenv("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "0")
    ray_executor._set_ray_env()
    assert os.environ["RAY_DISABLE_FAILURE_SIGNAL_HANDLER"] == "0"
