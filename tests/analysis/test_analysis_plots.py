"""Figures checked for what they contain."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection, PolyCollection

from analysis import (
    epoch_rank_stability,
    epoch_variance,
    expected_max,
    grid_summary,
    load_study,
    plot_compare,
    plot_epoch_variance,
    plot_expected_max,
    plot_grid_heatmap,
    plot_grid_summary,
    plot_rank_stability,
    plot_seed_histogram,
    plot_split_correlation,
)


@pytest.fixture(scope="module")
def seeds(seed_study: Path):
    return load_study(seed_study).select()


@pytest.fixture(scope="module")
def grid(grid_study: Path):
    return load_study(grid_study).select()


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.lines]


def test_seed_histogram(seeds) -> None:
    trials = seeds.trials
    ax = plot_seed_histogram(trials, metric="val_top1", bins=6)
    assert len(ax.patches) == 6
    heights = np.array([p.get_height() * p.get_width() for p in ax.patches])
    assert heights.sum() == pytest.approx(1.0)  # density-scaled
    labels = _labels(ax)
    best = trials.loc[trials["val_top1"].idxmax()]
    assert "normal fit" in labels and "density (KDE)" in labels and "mean ± 1 std" in labels
    assert any(label.startswith(f"best seed {best['seed']}:") for label in labels)
    mean_line = next(line for line in ax.lines if line.get_label() == f"mean {trials['val_top1'].mean():.2f}")
    assert mean_line.get_xdata()[0] == pytest.approx(trials["val_top1"].mean())
    assert ax.get_xlabel() == "val_top1" and "18 seeds" in ax.get_title()


def test_seed_histogram_of_one_seed_draws_no_fit(seeds) -> None:
    ax = plot_seed_histogram(seeds.trials.iloc[:1], metric="v2_top1")
    assert "normal fit" not in _labels(ax)
    with pytest.raises(ValueError, match="no column"):
        plot_seed_histogram(seeds.trials, metric="test_top1")


def test_plots_draw_on_the_given_axes(seeds) -> None:
    fig, ax = plt.subplots()
    assert plot_seed_histogram(seeds.trials, ax=ax) is ax
    assert plot_expected_max(seeds.trials, ax=ax) is ax
    assert len(fig.axes) == 1


def test_epoch_variance_plot(seeds) -> None:
    ax = plot_epoch_variance(seeds.epochs, metric="v2_top1")
    table = epoch_variance(seeds.epochs, "v2_top1")
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    mean = next(line for line in ax.lines if line.get_label() == "mean")
    np.testing.assert_allclose(mean.get_ydata(), table["mean"])
    twins = [other for other in ax.figure.axes if other is not ax]
    assert len(twins) == 1
    np.testing.assert_allclose(twins[0].lines[0].get_ydata(), table["std"])
    assert ax.get_legend() is not None and len(ax.get_legend().get_texts()) == 4


def test_rank_stability_plot(seeds) -> None:
    ax = plot_rank_stability(seeds.epochs)
    table = epoch_rank_stability(seeds.epochs)
    assert _labels(ax)[:2] == ["Spearman ρ", "Kendall τ"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), table["spearman"])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), table["kendall"])


def test_expected_max_plot(seeds) -> None:
    ax = plot_expected_max(seeds.trials, metric="val_top1", method="dodge")
    table = expected_max(seeds.trials, method="dodge")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), table["expected_max"])
    np.testing.assert_allclose(ax.lines[1].get_ydata(), table["normal"])
    assert "dodge" in ax.lines[0].get_label()
    assert ax.get_xscale() == "linear"  # 18 trials; log scale from 20 on


def test_split_correlation_plot(seeds) -> None:
    ax = plot_split_correlation(seeds.trials)
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(points[0].get_offsets()) == 18
    assert "Pearson r" in ax.get_title() and "n = 18" in ax.get_title()
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("val_top1", "v2_top1")


def test_compare_plot(seed_study: Path, other_seed_study: Path) -> None:
    a, b = load_study(other_seed_study).trials, load_study(seed_study).trials
    ax = plot_compare(a, b, metric="val_top1", labels=("better", "base"))
    points = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    assert points == 15 + 18
    assert [t.get_text() for t in ax.get_xticklabels()] == ["better", "base"]
    assert "P(better > base)" in ax.get_title()


def test_grid_heatmap(grid) -> None:
    ax = plot_grid_heatmap(grid.trials, x="lr", y="weight_decay")
    texts = sorted(float(t.get_text()) for t in ax.texts)
    means = sorted(grid.trials.groupby(["lr", "weight_decay"])["val_top1"].mean().round(2))
    assert texts == pytest.approx(means)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("lr", "weight_decay")
    with pytest.raises(ValueError, match="no column 'momentum'"):
        plot_grid_heatmap(grid.trials, x="lr", y="momentum")


def test_grid_summary_bars(grid) -> None:
    table = grid_summary(grid.trials, ["lr", "weight_decay"])
    ax = plot_grid_summary(table)
    bars = list(ax.patches)
    assert len(bars) == 4
    np.testing.assert_allclose([b.get_width() for b in bars], table["mean"])
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == f"lr={table.iloc[0]['lr']}, weight_decay={table.iloc[0]['weight_decay']}"
    assert ax.get_xlabel() == "mean val_top1"
    alphas = [b.get_alpha() for b in bars]
    assert alphas == [0.9 if flag is True else 0.5 for flag in table["distinguishable_from_next"]]
    with pytest.raises(ValueError, match="no column"):
        plot_grid_summary(grid.trials)


def test_expected_max_over_configurations(grid) -> None:
    summary = grid_summary(grid.trials, ["lr", "weight_decay"])
    ax = plot_expected_max(summary, metric="mean")
    assert len(ax.lines[0].get_ydata()) == 4
    assert ax.lines[0].get_ydata()[-1] == pytest.approx(summary["mean"].max())


def test_plots_accept_plain_values() -> None:
    ax = plot_compare(np.array([1.0, 2.0, 3.0]), pd.Series([0.5, 1.5]), metric="score")
    assert ax.get_ylabel() == "score"
