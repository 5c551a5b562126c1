"""Reports, comparisons and notebooks on real studies made by the engine (not synthetic)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name,figures", [("s", {"histogram_val_top1", "epoch_variance_val_top1", "expected_max"}), ("g", {"grid_heatmap"})])
def test_report_on_a_real_study(real_studies, name, figures):
    storage, procs = real_studies
    assert procs[name].returncode == 0, procs[name].stderr[-2000:]
    proc = run_cli("report", name, "--storage", str(storage))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = storage / name / "report"
    pngs = {p.stem for p in out.glob("*.png")}
    assert any(any(p.startswith(f) for p in pngs) for f in figures), pngs
    assert {p.stem for p in out.glob("*.svg")} == pngs
    html = (out / "index.html").read_text()
    assert all(f"{p}.png" in html for p in pngs)
    summary = json.loads((out / "summary.json").read_text())
    trials = pd.read_parquet(storage / name / "trials.parquet")
    if name == "s":  # the seed table is the trials table's statistics
        rows = {row["metric"]: row for row in summary["seed_table"]}
        for metric in ("val_top1", "v2_top1"):
            assert rows[metric]["n"] == 3
            assert rows[metric]["mean"] == pytest.approx(trials[metric].mean())
            assert rows[metric]["std"] == pytest.approx(trials[metric].std(ddof=1))
            assert rows[metric]["max"] == pytest.approx(trials[metric].max())
    assert (out / "summary.md").read_text().startswith("#")


def test_compare_two_real_studies(real_studies, tmp_path):
    storage, _ = real_studies
    proc = run_cli("compare", "s", "s3", "--storage", str(storage), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert "p_a_gt_b" in json.dumps(summary)
    assert (tmp_path / "cmp" / "index.html").exists()


@pytest.mark.parametrize("notebook,name", [("seed_study.ipynb", "s"), ("grid_search.ipynb", "g")])
def test_notebooks_run_on_real_studies(real_studies, notebook, name, monkeypatch):
    storage, _ = real_studies
    monkeypatch.setenv("RSB_STUDY", str(storage / name))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(REPO / "notebooks" / notebook, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
