"""The notebooks are thin, stripped, open on the newest study of their kind in the storage
(RSB_TUNE_STORAGE) or the one RSB_STUDY names, and run against synthetic studies."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from synthetic_study import GRID, grid_effects, write_study

from tests.conftest import write_minimal_study

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
    assert 'STORAGE = rsb_tune.default_storage(root="..")' in parameters[0].source  # $RSB_TUNE_STORAGE, else ../rsb-results
    for cell in code:
        tree = ast.parse(cell.source)
        assert not any(
            isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            for n in ast.walk(tree)
        )
    assert "import analysis" in "\n".join(cell.source for cell in code)


def _execute(name: str, study: Path | None, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    if study is None:
        monkeypatch.delenv("RSB_STUDY", raising=False)
    else:
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


@pytest.mark.parametrize("name,kind", [("seed_study.ipynb", "seeds"), ("grid_search.ipynb", "grid")])
def test_a_notebook_opens_on_the_newest_study_of_its_kind(name: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = tmp_path / "storage"
    grid = dict(kind="grid", grid=GRID, effects=grid_effects, seeds=(0, 1), n_epochs=3)
    write_study(storage, "old-seeds", started_at="2026-01-01T10:00:00", n_epochs=3)
    write_study(storage, "new-seeds", started_at="2026-01-02T10:00:00", n_epochs=3)
    write_study(storage, "old-grid", started_at="2026-01-01T11:00:00", **grid)
    write_study(storage, "new-grid", started_at="2026-01-02T11:00:00", **grid)
    write_study(storage, "newest-of-all", started_at="2026-01-03T10:00:00", kind="other")
    write_minimal_study(storage, f"running-{kind}", kind=kind, started_at="2026-01-04T10:00:00")  # no trial finished yet
    monkeypatch.setenv("RSB_TUNE_STORAGE", str(storage))
    text = _text(_execute(name, None, monkeypatch))
    assert f"study: {storage / f'new-{kind}'}" in text and "old-" not in text and "newest-of-all" not in text and "running-" not in text


@pytest.mark.parametrize("name,command", [("seed_study.ipynb", "rsb-tune seeds --n 100 --recipe A2"), ("grid_search.ipynb", "rsb-tune grid --space lamb_bce")])
def test_a_notebook_without_a_study_says_how_to_make_one(name: str, command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RSB_TUNE_STORAGE", str(tmp_path / "empty"))
    with pytest.raises(CellExecutionError) as raised:
        _execute(name, None, monkeypatch)
    assert f"with a finished trial in {tmp_path / 'empty'}: make one with `{command}`" in str(raised.value)
    assert "RSB_TUNE_STORAGE" in str(raised.value)


@pytest.mark.e2e
def test_run_a_study_notebook_runs_a_real_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The notebook starts a real (tiny) study on a local Ray from Python and analyses it."""
    monkeypatch.setenv("RSB_TUNE_STORAGE", str(tmp_path / "st"))
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


def test_architecture_x_procedure_notebook_runs(grid_study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = _execute("architecture_x_procedure.ipynb", grid_study, monkeypatch)
    text = _text(notebook)
    assert "wins under weight_decay=" in text and "partial_eta_sq" in text and "p_holm" in text
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1
