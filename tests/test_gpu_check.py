"""benchmarks/gpu_check.py, the GPU checks in one command: its dry mode on a CPU plans every
check through the CLI and runs each one's smallest CPU form, and a failed check fails the run."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _result(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[len("RESULT ") :])


def test_dry_run_plans_and_runs_every_checks_smallest_form():
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = _result(proc.stdout)
    checks = res["checks"]
    assert set(checks) == {"trial", "ddp", "packs", "study100", "augment"} and res["failed"] == []
    assert checks["trial"]["amp"] == "bf16" and checks["trial"]["channels_last"] is True
    assert [c.split("--pack ")[1].split()[0] for c in checks["packs"]["planned"]] == ["1", "8", "32"]
    assert "--workers-per-trial 2" in checks["ddp"]["planned"][0] and "--n 100" in checks["study100"]["planned"]
    assert checks["augment"]["max_diff"] <= 3
    assert "| check" in proc.stdout  # the table


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA machine runs the real checks")
def test_without_a_gpu_it_refuses_and_a_failed_check_fails_the_run(monkeypatch, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    assert gpu_check.main([]) == 2
    monkeypatch.setitem(gpu_check.CHECKS, "augment", lambda ctx: {"ok": False, "max_diff": 9})
    assert gpu_check.main(["--dry-run", "--only", "augment"]) == 1
    assert _result(capsys.readouterr().out)["failed"] == ["augment"]
