"""load_study against the data contract, and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from synthetic_study import N_V2, N_VAL, write_study

from analysis import StudyTables, StudyError, load_study


def test_load_single_study(seed_study: Path) -> None:
    study = load_study(seed_study)
    assert isinstance(study, StudyTables)
    assert study.meta["name"] == "a2-seeds" and study.meta["kind"] == "seeds"
    assert len(study.trials) == 20 == study.meta["n_trials"]
    assert "study" not in study.trials.columns
    assert set(study.epochs.columns) >= {"trial_id", "seed", "epoch", "val_top1", "v2_top1"}
    assert study.epochs.groupby("trial_id")["epoch"].max().max() == 5
    assert study.paths == (seed_study,)


def test_load_accepts_str(seed_study: Path) -> None:
    assert load_study(str(seed_study)).name == "a2-seeds"


def test_select_keeps_ok_trials_and_their_epochs(seed_study: Path) -> None:
    study = load_study(seed_study)
    ok = study.select()
    assert set(ok.trials["status"]) == {"ok"}
    assert len(ok.trials) == (study.trials["status"] == "ok").sum() == 18
    assert set(ok.epochs["trial_id"]) == set(ok.trials["trial_id"])
    assert study.select(None) is study


def test_several_studies_concatenate_with_study_column(seed_study: Path, grid_study: Path) -> None:
    both = load_study([seed_study, grid_study])
    assert both.combined
    assert list(both.metas) == ["a2-seeds", "a2-grid"]
    counts = both.trials["study"].value_counts()
    assert counts["a2-seeds"] == 20 and counts["a2-grid"] == 12
    assert set(both.epochs["study"]) == {"a2-seeds", "a2-grid"}
    with pytest.raises(ValueError, match="combines 2 studies"):
        _ = both.meta
    # trial ids repeat across studies: selection must keep them apart
    ok = both.select()
    expected = {(s, t) for s, t in ok.trials[["study", "trial_id"]].itertuples(index=False)}
    assert {(s, t) for s, t in ok.epochs[["study", "trial_id"]].itertuples(index=False)} == expected


def test_a_list_of_one_is_a_single_study(seed_study: Path) -> None:
    assert not load_study([seed_study]).combined


def test_predictions_match_the_accuracies(seed_study: Path) -> None:
    study = load_study(seed_study)
    ok = study.trials[study.trials["status"] == "ok"]
    for split, size in (("val", N_VAL), ("v2", N_V2)):
        matrix = study.predictions(split)
        assert matrix.shape == (len(ok), size)
        assert matrix.dtypes.eq(bool).all()
        assert list(matrix.index) == list(ok["trial_id"])
        np.testing.assert_allclose(100 * matrix.mean(axis=1).to_numpy(), ok[f"{split}_top1"].to_numpy())


def test_predictions_of_combined_studies_are_keyed_by_study(seed_study: Path, tiny_study: Path) -> None:
    matrix = load_study([seed_study, tiny_study]).predictions("val")
    assert matrix.index.names == ["study", "trial_id"]
    assert len(matrix) == 18 + 2


def test_predictions_reject_unknown_split(seed_study: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        load_study(seed_study).predictions("test")


@pytest.fixture
def broken(tmp_path: Path, tiny_study: Path) -> Path:
    """A fresh copy of the tiny study to damage."""
    return Path(shutil.copytree(tiny_study, tmp_path / "broken"))


def _edit_meta(path: Path, **changes) -> None:
    meta = yaml.safe_load((path / "study.yaml").read_text())
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is ...]:
        del meta[key]
    (path / "study.yaml").write_text(yaml.safe_dump(meta))


@pytest.mark.parametrize(
    ("damage", "file", "message"),
    [
        (lambda p: (p / "study.yaml").unlink(), "study.yaml", "not found"),
        (lambda p: (p / "study.yaml").write_text("name: [unclosed"), "study.yaml", "cannot read"),
        (lambda p: (p / "study.yaml").write_text("- a list"), "study.yaml", "mapping"),
        (lambda p: _edit_meta(p, kind=...), "study.yaml", "lacks kind"),
        (lambda p: _edit_meta(p, kind="sweep"), "study.yaml", "kind must be"),
        (lambda p: (p / "trials.parquet").unlink(), "trials.parquet", "not found"),
        (lambda p: (p / "trials.parquet").write_bytes(b"not parquet"), "trials.parquet", "cannot read"),
        (
            lambda p: (
                pd.read_parquet(p / "epochs.parquet").drop(columns="epoch").to_parquet(p / "epochs.parquet")
            ),
            "epochs.parquet",
            "lacks column",
        ),
    ],
)
def test_broken_study_names_the_file(broken: Path, damage, file: str, message: str) -> None:
    damage(broken)
    with pytest.raises(StudyError, match=message) as info:
        load_study(broken)
    assert str(broken / file) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="study directory not found") as info:
        load_study(tmp_path / "nope")
    assert "nope" in str(info.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.unlink(), "prediction file missing"),
        (lambda f: f.write_bytes(b"garbage"), "cannot read"),
        (lambda f: np.savez_compressed(f, other=np.ones(3)), "no array 'val_correct'"),
        (
            lambda f: np.savez_compressed(f, val_correct=np.ones(3, bool), v2_correct=np.ones(3, bool)),
            "shape",
        ),
    ],
)
def test_broken_predictions_name_the_file(broken: Path, damage, message: str) -> None:
    npz = broken / "predictions" / "trial_00000.npz"
    damage(npz)
    study = load_study(broken)
    with pytest.raises(StudyError, match=message) as info:
        study.predictions("val")
    assert str(npz) in str(info.value)


def test_same_names_cannot_be_combined(tmp_path: Path) -> None:
    a = write_study(tmp_path / "one", "same", seeds=(0, 1))
    b = write_study(tmp_path / "two", "same", seeds=(0, 1))
    with pytest.raises(StudyError, match="share the name same"):
        load_study([a, b])


def test_empty_list_is_an_error() -> None:
    with pytest.raises(StudyError, match="empty"):
        load_study([])
