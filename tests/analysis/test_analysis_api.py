"""The public surface: what `analysis` exports, what it imports, what it leaves alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

import analysis
from analysis import aggregate, comparison, evals, factorial, grid, plots, plots_aggregate, plots_sequential, report, sequential, stats, study

ROOT = Path(__file__).resolve().parents[2]


def test_all_is_the_union_of_the_modules_public_names() -> None:
    modules = (study, stats, grid, plots, report, sequential, plots_sequential, comparison, aggregate, plots_aggregate, evals, factorial)
    assert sorted(analysis.__all__) == sorted(name for m in modules for name in m.__all__)
    assert len(set(analysis.__all__)) == len(analysis.__all__)
    for name in analysis.__all__:
        assert getattr(analysis, name).__doc__, name


def test_importing_analysis_loads_neither_torch_nor_ray() -> None:
    code = "import sys, analysis; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
    sources = "\n".join(p.read_text() for p in (ROOT / "analysis").glob("*.py"))
    assert "import torch" not in sources and "import ray" not in sources


def test_plots_leave_global_style_alone() -> None:
    before = dict(matplotlib.rcParams)
    trials = pd.DataFrame({"seed": range(5), "status": "ok", "val_top1": np.linspace(79, 80, 5)})
    analysis.plot_seed_histogram(trials)
    analysis.plot_expected_max(trials)
    assert dict(matplotlib.rcParams) == before
