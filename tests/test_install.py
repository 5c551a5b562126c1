"""The README's two commands in order, as a newcomer runs them: an installed package never
writes into its own install tree, and ``import rsb_tune`` works from any directory after them.

A venv over this interpreter's packages (torch, timm and Ray are not installed again) gets
``pip install .``, runs a one-trial study from another directory, and must leave the installed
files exactly as pip wrote them (numba caches its compiled loops in the user's cache directory,
not in ``site-packages/rsb_tune/__pycache__``); then ``pip install -e .`` over it, and the API
is importable from ``/tmp``-like directories.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _files(tree: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(tree)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(tree.rglob("*")) if p.is_file()}


@pytest.mark.e2e
def test_install_then_study_leaves_the_install_tree_untouched_and_the_api_importable(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)  # pip and setuptools: this interpreter's
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "RSB_TUNE_CACHE_DIR")}
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, str(ROOT)], check=True, env=env, cwd=tmp_path, capture_output=True)
    where = subprocess.run([py, "-c", "import rsb_tune, os; print(os.path.dirname(rsb_tune.__file__))"], check=True, env=env, cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    installed = Path(where)
    assert installed.is_relative_to(venv), f"the venv imports {installed}, not its own install"
    before = _files(installed)
    shipped = {str(p.relative_to(ROOT / "rsb_tune")) for p in (ROOT / "rsb_tune").rglob("*.py")}
    missing = sorted(shipped - set(before))
    assert not missing, f"pip install . leaves out {missing} (pyproject.toml's packages)"
    # a real study (one trial, one epoch) in another directory: the driver warms the compiled loops
    work = tmp_path / "work"
    work.mkdir()
    rsb = str(venv / "bin" / "rsb-tune")
    proc = subprocess.run([rsb, "seeds", "--n", "1", "--recipe", "A3", "--epochs", "1", "--quiet"], env=env, cwd=work, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = _files(installed)
    assert after == before, f"the study wrote into the install tree: {sorted(set(after) ^ set(before)) or 'files changed'}"
    assert list((tmp_path / "cache" / "rsb-tune" / "numba").rglob("*.nbi")), "numba's cache is not in the user's cache directory"
    # the README's second command over the first
    subprocess.run([*pip, "-e", str(ROOT)], check=True, env=env, cwd=tmp_path, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([py, "-c", "import rsb_tune; print(rsb_tune.load, rsb_tune.__file__)"], env=env, cwd=elsewhere, capture_output=True, text=True)
    assert out.returncode == 0 and "function load" in out.stdout, out.stderr[-2000:]
