"""The notebooks are thin, stripped, parametrised by RSB_STUDY, and run against synthetic studies."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_is_thin_and_stripped(name: str) -> None:
    notebook = _read(name)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    parameters = [cell for cell in code if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1
    assert 'os.environ.get("RSB_STUDY", "rsb-results/' in parameters[0].source or 'os.environ.get("RSB_STORAGE", "rsb-results")' in parameters[0].source
    for cell in code:
        tree = ast.parse(cell.source)
        assert not any(
            isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            for n in ast.walk(tree)
        )
    assert "import analysis" in "\n".join(cell.source for cell in code)


def _execute(name: str, study: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("RSB_STUDY", str(study))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own inline backend
    notebook = _read(name)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    return notebook


def _text(notebook: nbformat.NotebookNode) -> str:
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def test_seed_notebook_runs(seed_study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = _execute("seed_study.ipynb", seed_study, monkeypatch)
    text = _text(notebook)
    assert "a2-seeds" in text  # the meta of the study given by RSB_STUDY
    assert "expected_range_in_std" in text and "test_set_share" in text
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == sum(
        "analysis.plot_" in c.source for c in notebook.cells
    )  # one figure per plot cell


def test_grid_notebook_runs(grid_study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = _execute("grid_search.ipynb", grid_study, monkeypatch)
    text = _text(notebook)
    assert "a2-grid" in text and "distinguishable_from_next" in text and "share_between" in text


@pytest.mark.e2e
def test_run_a_study_notebook_runs_a_real_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook starts a real (tiny) study on a local Ray from Python and analyses it."""
    monkeypatch.setenv("RSB_STORAGE", str(tmp_path / "st"))
    monkeypatch.setenv("RSB_SEEDS", "2")
    monkeypatch.setenv("RSB_EPOCHS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = _read("run_a_study.ipynb")
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = _text(notebook)
    assert "2 trials (seeds, recipe A2" in text and "2 ok" in text and "'finished'" in text
    trials = __import__("pandas").read_parquet(tmp_path / "st" / "notebook-A2-2x1" / "trials.parquet")
    assert len(trials) == 2 and (trials.status == "ok").all()
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == sum("analysis.plot_" in c.source for c in notebook.cells)
    assert (tmp_path / "st" / "notebook-A2-2x1" / "report" / "index.html").is_file()
