"""Fixtures of the analysis tests: synthetic studies (see synthetic_study.py) and figure hygiene."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests only: no display

import matplotlib.pyplot as plt
import pytest
from synthetic_study import GRID, grid_effects, write_study

# Plain `pytest` puts tests/ on sys.path (for tests/conftest.py), where this folder is a
# namespace package called "analysis"; an editable install's finder runs after sys.path,
# so that namespace would shadow the real package. A regular package anywhere on sys.path
# wins over a namespace, so the checkout only needs to be on it (no-op under `python -m pytest`
# or with `pythonpath = ["."]` in the pytest settings).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="session")
def studies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rsb-results")


@pytest.fixture(scope="session")
def seed_study(studies: Path) -> Path:
    """20 seeds x 5 epochs; trial 3 diverged, trial 7 errored."""
    return write_study(studies, "a2-seeds", statuses={3: "diverged", 7: "error"})


@pytest.fixture(scope="session")
def other_seed_study(studies: Path) -> Path:
    """A second seed study whose trials are better (to compare against seed_study)."""
    return write_study(studies, "a2-seeds-better", seeds=range(100, 115), ability_std=0.05, seed=1)


@pytest.fixture(scope="session")
def grid_study(studies: Path) -> Path:
    """2 x 2 grid (lr, weight_decay) x 3 seeds x 4 epochs."""
    return write_study(
        studies, "a2-grid", kind="grid", grid=GRID, effects=grid_effects, seeds=(0, 1, 2), n_epochs=4
    )


@pytest.fixture(scope="session")
def tiny_study(studies: Path) -> Path:
    """3 trials x 2 epochs, one errored: the degenerate case."""
    return write_study(studies, "tiny", seeds=(0, 1, 2), statuses={2: "error"}, n_epochs=2)
