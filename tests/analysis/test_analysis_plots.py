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
from analysis.contract import decimals, mean_std


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
    d = decimals(trials["val_top1"])
    mean_line = next(line for line in ax.lines if line.get_label() == f"mean {trials['val_top1'].mean():.{d}f}")
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
    cells = grid.trials.groupby(["lr", "weight_decay"])["val_top1"].mean()
    means = sorted(cells.round(decimals(cells)))
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


# --------------------------------------------------------------------------- what a reader sees


def _near_100(n: int = 12, epochs: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeds whose accuracy is close to 100 % (a KDE or the normal fit reaches past it), 2 epochs."""
    rng = np.random.default_rng(0)
    final = np.minimum(99.6 + rng.normal(0, 0.2, n), 99.98)
    rows = [
        {"trial_id": f"t{i:04d}", "seed": i, "epoch": e, "val_top1": final[i] - (epochs - e) * rng.uniform(1, 3),
         "v2_top1": final[i] - 0.5 - (epochs - e) * rng.uniform(1, 3), "val_loss": 2.3012 + rng.normal(0, 4e-4) / e}
        for i in range(n) for e in range(1, epochs + 1)
    ]  # fmt: skip
    epochs_table = pd.DataFrame(rows)
    trials = epochs_table[epochs_table["epoch"] == epochs].assign(status="ok").reset_index(drop=True)
    return trials, epochs_table


def _data_points(ax) -> np.ndarray:
    """Every drawn data vertex of ``ax`` (and its twins) in display coordinates: line vertices,
    scatter points, band outlines and bar corners; reference lines spanning the Axes excluded."""
    axes = [a for a in ax.figure.axes if a is ax or a.bbox.bounds == ax.bbox.bounds]
    points = []
    for a in axes:
        for line in a.lines:
            xy = np.column_stack([line.get_xdata(), line.get_ydata()]).astype(float)
            if len(xy) == 2 and (np.allclose(xy[:, 0], xy[0, 0]) or np.allclose(xy[:, 1], xy[0, 1])) and line.get_transform() != a.transData:
                continue  # axvline/axhline: a reference, not data
            points.append(line.get_transform().transform(xy))
        for c in a.collections:
            if len(c.get_offsets()) and isinstance(c, PathCollection):
                points.append(c.get_offset_transform().transform(c.get_offsets()))
            for path in c.get_paths() if isinstance(c, PolyCollection) else ():
                points.append(c.get_transform().transform(path.vertices))
        for patch in a.patches:
            points.append(patch.get_transform().transform(patch.get_path().vertices))
    xy = np.concatenate(points)
    return xy[np.isfinite(xy).all(axis=1)]


def _assert_legend_covers_no_data(ax) -> None:
    ax.figure.canvas.draw()
    legend = ax.get_legend()
    assert legend is not None
    box = legend.get_window_extent()
    inside = [tuple(p) for p in _data_points(ax) if box.contains(*p)]
    assert not inside, f"the legend covers {len(inside)} data points, e.g. {inside[:3]}"
    for other in ax.figure.axes:  # nor the twin's tick labels and axis label
        if other is not ax:
            assert not box.overlaps(other.yaxis.get_tightbbox()), "the legend covers the twin axis"
    assert not box.overlaps(ax.title.get_window_extent()), "the legend covers the title"


def _assert_percent_view(limits, values) -> None:
    low, high = limits
    assert 0.0 <= low and high <= 100.0, limits
    assert low <= np.min(values) and np.max(values) <= high, (limits, np.min(values), np.max(values))


def _assert_integer_ticks(axis) -> None:
    low, high = sorted(axis.get_view_interval())
    ticks = [t for t in axis.get_majorticklocs() if low - 1e-9 <= t <= high + 1e-9]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_accuracy_axes_stay_inside_0_100_and_cover_the_data() -> None:
    trials, epochs = _near_100()
    values = trials["val_top1"]
    _assert_percent_view(plot_seed_histogram(trials, metric="val_top1").get_xlim(), values)
    ax = plot_epoch_variance(epochs, metric="val_top1")
    _assert_percent_view(ax.get_ylim(), epochs["val_top1"])
    drawn = expected_max(trials, metric="val_top1")[["expected_max", "normal"]].to_numpy()
    _assert_percent_view(plot_expected_max(trials, metric="val_top1").get_ylim(), drawn)
    ax = plot_split_correlation(trials)
    _assert_percent_view(ax.get_xlim(), values)
    _assert_percent_view(ax.get_ylim(), trials["v2_top1"])
    _assert_percent_view(plot_compare(trials, trials.assign(val_top1=values - 0.1)).get_ylim(), values - 0.1)
    summary = grid_summary(trials.assign(lr=[0.1, 0.2] * 6), ["lr"])
    _assert_percent_view(plot_grid_summary(summary).get_xlim(), summary["mean"])
    # a loss is not a percentage: its axis is not clipped to [0, 100]
    assert plot_seed_histogram(trials, metric="val_loss", mode="min").get_xlim()[1] < 3


def test_epoch_axes_have_integer_ticks() -> None:
    _, epochs = _near_100(epochs=2)
    _assert_integer_ticks(plot_epoch_variance(epochs, metric="val_top1").xaxis)
    _assert_integer_ticks(plot_rank_stability(epochs).xaxis)
    trials = epochs[epochs["epoch"] == 2]
    _assert_integer_ticks(plot_expected_max(trials.iloc[:5], metric="val_top1").xaxis)  # k is a count too


def test_legends_cover_no_data(seeds) -> None:
    trials, epochs = _near_100()
    for ax in (
        plot_seed_histogram(seeds.trials, metric="val_top1"),
        plot_seed_histogram(trials, metric="val_top1"),
        plot_epoch_variance(seeds.epochs, metric="v2_top1"),
        plot_epoch_variance(epochs, metric="val_top1"),
        plot_rank_stability(seeds.epochs),
        plot_expected_max(seeds.trials, metric="val_top1"),
    ):
        _assert_legend_covers_no_data(ax)


def test_the_legend_check_sees_a_covering_legend(seeds) -> None:
    """The check above is not vacuous: a legend drawn over the lines fails it."""
    ax = plot_epoch_variance(seeds.epochs, metric="v2_top1")
    ax.legend(loc="center", fontsize="xx-large")
    with pytest.raises(AssertionError, match="covers"):
        _assert_legend_covers_no_data(ax)


def test_labels_carry_the_data_s_decimals(grid) -> None:
    trials, _ = _near_100()
    losses = trials["val_loss"]
    labels = _labels(plot_seed_histogram(trials, metric="val_loss", mode="min"))
    mean = next(label for label in labels if label.startswith("mean ") and "±" not in label)
    assert mean == f"mean {losses.mean():.5f}"  # a std of ~4e-4: 2 significant digits of it, not "2.30"
    ax = plot_grid_heatmap(grid.trials, x="lr", y="weight_decay")
    d = decimals(grid.trials.groupby(["lr", "weight_decay"])["val_top1"].mean())
    assert all(len(t.get_text().split(".")[-1]) == d for t in ax.texts) if d else all("." not in t.get_text() for t in ax.texts)


def test_decimals_follow_the_spread() -> None:
    assert mean_std(2.301234, 0.000421) == "2.30123 ± 0.00042"
    assert mean_std(75.312, 0.312) == "75.31 ± 0.31"
    assert mean_std(75.3, 1.5) == "75.3 ± 1.5"
    assert mean_std(75.3, float("nan")) == "75.30 ± nan"  # one seed: the value's own scale
    assert decimals([2.3, 2.3]) == 3 and decimals([]) == 2 and decimals([1.0, 2.0, 3.0]) == 1
