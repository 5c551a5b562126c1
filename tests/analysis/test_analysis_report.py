"""Report writers: the files, their numbers, and quiet degenerate cases."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pandas as pd
import pytest
from synthetic_study import write_study

from analysis import compare, load_study, seed_table, write_compare_report, write_report

SEED_FIGURES = {
    "histogram_val_top1",
    "histogram_v2_top1",
    "epoch_variance_val_top1",
    "epoch_variance_v2_top1",
    "rank_stability",
    "expected_max",
    "split_correlation",
}
GRID_FIGURES = {"grid_summary", "grid_heatmap", "expected_max", "interaction"}  # the grid crosses lr x weight_decay with 3 seeds


def _check_folder(out: Path, figures: set[str]) -> dict:
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["figures"]) == figures
    for name in figures:
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.svg").read_text().lstrip().startswith("<?xml")
    page = (out / "index.html").read_text()
    for png in out.glob("*.png"):
        assert f'src="{png.name}"' in page
    assert not re.search(r'src="/', page)  # relative links only
    markdown = (out / "summary.md").read_text()
    assert all(f"({name}.png)" in markdown for name in figures)
    return summary


@pytest.fixture(scope="module")
def seed_report(seed_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(seed_study, tmp_path_factory.mktemp("seed_report"))


def test_seed_report_files(seed_report: Path) -> None:
    _check_folder(seed_report, SEED_FIGURES)


def test_seed_report_numbers(seed_report: Path, seed_study: Path) -> None:
    summary = json.loads((seed_report / "summary.json").read_text())
    trials = load_study(seed_study).trials
    expected = seed_table(trials).set_index("metric")
    table = pd.DataFrame(summary["seed_table"]).set_index("metric")
    assert list(table.index) == ["val_top1", "v2_top1"]
    for metric in table.index:
        for column in ("n", "mean", "std", "min", "max", "mean_ci_low", "std_ci_high"):
            assert table.loc[metric, column] == pytest.approx(expected.loc[metric, column])
    assert summary["status_counts"] == {"ok": 18, "diverged": 1, "error": 1}
    assert summary["study"]["name"] == "a2-seeds"
    ks = [row["k"] for row in summary["expected_max"] if row["method"] == "unbiased"]
    assert ks == [1, 5, 10, 18]
    noise = {row["metric"]: row for row in summary["test_set_noise"]}
    assert set(noise) == {"val_top1", "v2_top1"} and noise["val_top1"]["test_set_var"] > 0
    assert summary["split_correlation"][0]["n"] == 18
    assert len(summary["epoch_variance"]["val_top1"]) == 5


def test_seed_report_markdown_has_the_paper_table(seed_report: Path) -> None:
    markdown = (seed_report / "summary.md").read_text()
    assert "| statistic | val_top1 | v2_top1 |" in markdown
    assert re.search(r"\| n_diverged \| 1 \| 1 \|", markdown)
    # the method of each interval of the mean, next to it
    assert "| mean_ci_method | 95 % t-interval (n = 18) | 95 % t-interval (n = 18) |" in markdown
    assert "Student t-interval at every n" in markdown


def test_report_defaults_to_the_study_folder(tmp_path: Path) -> None:
    study = write_study(tmp_path, "small", seeds=(0, 1, 2, 3), n_epochs=2)
    out = write_report(study)
    assert out == study / "report" and (out / "index.html").is_file()


def test_grid_report(grid_study: Path, tmp_path: Path) -> None:
    summary = _check_folder(write_report(grid_study, tmp_path), GRID_FIGURES)
    ranking = pd.DataFrame(summary["grid_summary"])
    assert list(ranking["rank"]) == [1, 2, 3, 4]
    assert summary["variance_components"][0]["n_configs"] == 4
    assert {row["term"] for row in summary["param_anova"]} == {"lr", "weight_decay", "Residual"}
    assert [row["k"] for row in summary["expected_max"]][:2] == [1, 4]


def test_grid_report_counts_failed_trials(tmp_path: Path) -> None:
    grid = {"lr": [0.005, 0.008], "weight_decay": [0.01, 0.02]}
    study = write_study(tmp_path, "grid", kind="grid", grid=grid, seeds=(0, 1), statuses={3: "error"})
    out = write_report(study)
    summary = json.loads((out / "summary.json").read_text())
    assert sum(row["n_failed"] for row in summary["grid_summary"]) == 1
    assert sum(row["n"] for row in summary["grid_summary"]) == 7
    assert "None" not in (out / "index.html").read_text()  # missing values read NA


@pytest.mark.parametrize(
    ("seeds", "statuses"),
    [
        ((0, 1, 2), {2: "error"}),
        ((0, 1), {1: "diverged"}),
        ((0, 1, 2), {0: "error", 1: "error", 2: "diverged"}),
    ],
)
def test_degenerate_studies_report_quietly(tmp_path: Path, seeds, statuses) -> None:
    study = write_study(tmp_path, "degenerate", seeds=seeds, statuses=statuses, n_epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = write_report(study)
    assert [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)] == []
    summary = json.loads((out / "summary.json").read_text())  # strict JSON: NaN written as null
    assert (out / "index.html").is_file()
    if "seed_table" in summary:
        assert summary["seed_table"][0]["n"] == len(seeds) - len(statuses)
        if summary["seed_table"][0]["n"] == 1:
            assert summary["seed_table"][0]["std"] is None


def test_tiny_grid_with_one_seed_per_point(tmp_path: Path) -> None:
    grid = {"lr": [0.005, 0.008], "weight_decay": [0.01, 0.02]}
    study = write_study(tmp_path, "grid1", kind="grid", grid=grid, seeds=(0,), n_epochs=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = json.loads((write_report(study) / "summary.json").read_text())
    assert [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)] == []
    assert all(row["distinguishable_from_next"] is None for row in summary["grid_summary"])


def test_html_escapes_text(tmp_path: Path) -> None:
    study = write_study(tmp_path, "a<b>&c", seeds=(0, 1, 2), n_epochs=2)
    page = (write_report(study, tmp_path / "out") / "index.html").read_text()
    assert "a&lt;b&gt;&amp;c" in page and "a<b>" not in page


def test_compare_report(seed_study: Path, other_seed_study: Path, tmp_path: Path) -> None:
    out = write_compare_report(other_seed_study, seed_study, tmp_path / "cmp")
    summary = _check_folder(out, {"compare_val_top1", "compare_v2_top1"})
    rows = {row["metric"]: row for row in summary["compare"]}
    expected = compare(load_study(other_seed_study).trials, load_study(seed_study).trials, "v2_top1")
    for key in ("delta", "delta_ci_low", "p_a_gt_b", "p_permutation", "seeds_needed"):
        assert rows["v2_top1"][key] == pytest.approx(expected[key])
    assert {row["study"] for row in summary["seed_table"]} == {"a2-seeds-better", "a2-seeds"}
    assert [row["study"] for row in summary["studies"]] == ["a2-seeds-better", "a2-seeds"]
    markdown = (out / "summary.md").read_text()
    assert "| statistic | a2-seeds-better / val_top1 |" in markdown
    assert re.search(r"\| mean_ci_method( \| 95 % t-interval \(n = \d+\)){4} \|", markdown)
    assert "Welch t-interval" in markdown and {row["mean_ci_method"] for row in summary["seed_table"]} == {"t"}


def test_compare_report_labels_studies_with_the_same_name(tmp_path: Path) -> None:
    a = write_study(tmp_path / "x", "same", seeds=(0, 1, 2))
    b = write_study(tmp_path / "y", "same", seeds=(3, 4, 5), seed=2)
    summary = json.loads((write_compare_report(a, b, tmp_path / "cmp") / "summary.json").read_text())
    assert [row["study"] for row in summary["studies"]] == ["A: same", "B: same"]


def test_report_of_a_missing_study_is_a_study_error(tmp_path: Path) -> None:
    from analysis import StudyError

    with pytest.raises(StudyError, match="not found"):
        write_report(tmp_path / "missing")


def test_seed_table_shows_each_metric_at_its_std_s_decimals() -> None:
    """A loss whose std is 0.0004 is not shown as 2.30 ± 0.00; an accuracy keeps 2 digits of its std."""
    from analysis import stats
    from analysis.report import _seed_display

    trials = pd.DataFrame({"seed": range(4), "status": "ok", "val_loss": [2.3008, 2.3012, 2.3016, 2.3011], "val_top1": [75.1, 75.5, 74.9, 75.3]})
    shown = _seed_display(stats.seed_table(trials, ["val_loss", "val_top1"])).set_index("statistic")
    assert shown.loc["std", "val_loss"] == "0.00033" and shown.loc["mean", "val_loss"] == "2.30118"
    assert shown.loc["std", "val_top1"] == "0.26" and shown.loc["mean", "val_top1"] == "75.20"


def _html_tables(page: str) -> list[list[list[str]]]:
    """Each table of a page as rows of cell texts (header row first)."""
    tables = []
    for table in re.findall(r"<table.*?</table>", page, re.S):
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S)
        tables.append([[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in rows])
    return tables


def test_overview_is_one_row_per_key_and_names_the_install_without_git(seed_report: Path) -> None:
    """16 overview columns made the page 2032 px wide: the keys go down now, the study's name once."""
    overview = _html_tables((seed_report / "index.html").read_text())[0]
    assert all(len(row) == 2 for row in overview)
    keys = [row[0] for row in overview[1:]]
    assert "study" not in keys and keys.count("name") == 1 and "git_commit" in keys
    assert overview[1 + keys.index("git_commit")][1] == "unknown"  # the synthetic study records neither a commit nor a version


def test_provenance_and_split_names_come_from_the_study() -> None:
    from analysis.report import _provenance, _split_names

    assert _provenance({"git_commit": "abc123", "versions": {"rsb-tune": "0.1.0"}}) == "abc123"
    assert _provenance({"git_commit": None, "versions": {"rsb-tune": "0.1.0"}}) == "rsb-tune 0.1.0 (installed, no git checkout)"
    assert _split_names({"dataset": "imagenet"}) == ("ImageNet-val", "ImageNet-V2")
    assert _split_names({"dataset": "digits"}) == ("digits val", "digits v2")
    assert _split_names({}) == ("val", "v2")


def test_seed_report_names_its_own_splits_and_shows_wide_tables_transposed(seed_report: Path) -> None:
    markdown = (seed_report / "summary.md").read_text()
    assert "ImageNet" not in markdown  # a synthetic dataset is not ImageNet
    assert "## val against v2" in markdown
    noise = json.loads((seed_report / "summary.json").read_text())["test_set_noise"]
    widths = [max(len(r) for r in t) for t in _html_tables((seed_report / "index.html").read_text())]
    assert max(widths) <= 8, widths
    assert len(noise) == 2 and len(noise[0]) > 8  # the data keep every column
