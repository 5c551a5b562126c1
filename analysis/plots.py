"""Figures of seed studies and grids.

Every ``plot_*`` function takes the data first and keyword-only column names,
draws on ``ax`` (a new figure when ``None``) and returns the Axes. None calls
``plt.show()`` or changes global styles. The numbers come from
:mod:`analysis.stats` and :mod:`analysis.grid`; only the drawing lives here.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator
from scipy import stats

from analysis.contract import DEFAULT_METRIC, PERCENT_BOUNDS, best_of, decimals, is_percent

from analysis._tables import OK, check_mode, metric_values, require_columns, require_values, select_status
from analysis.stats import (
    Values,
    compare,
    epoch_rank_stability,
    epoch_variance,
    expected_max,
    mean_ci,
    split_correlation,
)

__all__ = [
    "plot_compare",
    "plot_epoch_variance",
    "plot_expected_max",
    "plot_grid_heatmap",
    "plot_grid_summary",
    "plot_interaction",
    "plot_rank_stability",
    "plot_seed_histogram",
    "plot_split_correlation",
]

MEAN_COLOR = "C3"
SPREAD_COLOR = "C0"
BEST_COLOR = "C2"


def _axes(ax: Axes | None) -> Axes:
    """``ax`` itself, or the Axes of a new pyplot figure (as seaborn does)."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots()[1]


def _clip_percent(ax: Axes, metric: str, values, axis: str = "x") -> None:
    """An accuracy's axis kept inside [0, 100] (a KDE or a fit may reach beyond; the view is
    clipped, not the data), still covering every value."""
    if not is_percent(metric):
        return
    get, set_ = (ax.get_xlim, ax.set_xlim) if axis == "x" else (ax.get_ylim, ax.set_ylim)
    low, high = get()
    finite = np.asarray(values, float)
    finite = finite[np.isfinite(finite)]
    data_low, data_high = (finite.min(), finite.max()) if finite.size else PERCENT_BOUNDS
    set_(max(low, min(PERCENT_BOUNDS[0], data_low)), min(high, max(PERCENT_BOUNDS[1], data_high)))


def _epoch_axis(ax: Axes) -> None:
    """Epochs are whole numbers: no tick at 1.5."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_outside(ax: Axes, handles=None) -> None:
    """The legend beside the Axes (right of it), where it covers no data."""
    kwargs = {"handles": handles} if handles is not None else {}
    ax.legend(**kwargs, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def plot_seed_histogram(
    trials: pd.DataFrame,
    *,
    metric: str = DEFAULT_METRIC,
    status: str | None = OK,
    mode: str = "max",
    bins: int | str = "auto",
    ax: Axes | None = None,
) -> Axes:
    """Histogram of the final ``metric`` over seeds (Figure 2 of "ResNet strikes back").

    Density-scaled bars with a kernel density curve, the fitted normal, the
    mean and mean +- 1 std as vertical lines, and the best seed (by ``mode``)
    marked: how much reporting the best seed flatters the recipe.
    """
    require_columns(trials, [metric, "seed"], "trials")
    ok = select_status(trials, status)
    values = require_values(metric_values(ok, metric, None), f"plot_seed_histogram({metric})")
    ax = _axes(ax)
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if values.size > 1 else float("nan")
    spread = values.size > 1 and std > 0
    sns.histplot(
        x=values, stat="density", bins=bins, kde=spread, color=SPREAD_COLOR, alpha=0.4, ax=ax, label="seeds"
    )
    if spread:
        ax.lines[-1].set_label("density (KDE)")
        grid = np.linspace(values.min() - 3 * std, values.max() + 3 * std, 200)
        ax.plot(grid, stats.norm.pdf(grid, mean, std), color="k", linestyle=":", label="normal fit")
        ax.axvline(mean - std, color=MEAN_COLOR, linestyle="--", label="mean ± 1 std")
        ax.axvline(mean + std, color=MEAN_COLOR, linestyle="--")
    d = decimals(values)
    ax.axvline(mean, color=MEAN_COLOR, label=f"mean {mean:.{d}f}")
    ordered = ok.sort_values("trial_id", kind="stable") if "trial_id" in ok.columns else ok
    scores = pd.to_numeric(ordered[metric], errors="coerce")
    # the status's tie rule: among tied seeds, the first in trial order
    _, at = best_of(((float(v), i) for i, v in scores.items() if np.isfinite(v)), check_mode(mode))
    best = ordered.loc[at]
    ax.axvline(
        float(best[metric]),
        color=BEST_COLOR,
        linewidth=2,
        label=f"best seed {best['seed']}: {float(best[metric]):.{d}f}",
    )
    ax.set(xlabel=metric, ylabel="density", title=f"{metric} over {values.size} seeds")
    _clip_percent(ax, metric, values)
    _legend_outside(ax)
    return ax


def plot_epoch_variance(epochs: pd.DataFrame, *, metric: str = DEFAULT_METRIC, ax: Axes | None = None) -> Axes:
    """Spread between seeds along training (Figure 3 of the paper).

    The mean over trials per epoch, a light min-max band and a darker 5-95 %
    band; the std over trials on a twin y axis (right).
    """
    table = epoch_variance(epochs, metric)
    ax = _axes(ax)
    ax.fill_between(
        table["epoch"], table["min"], table["max"], color=SPREAD_COLOR, alpha=0.2, label="min–max"
    )
    ax.fill_between(table["epoch"], table["q05"], table["q95"], color=SPREAD_COLOR, alpha=0.4, label="5–95 %")
    ax.plot(table["epoch"], table["mean"], color=SPREAD_COLOR, label="mean")
    ax.set(xlabel="epoch", ylabel=metric, title=f"{metric} across seeds along the epochs")
    twin = ax.twinx()
    twin.plot(table["epoch"], table["std"], color=MEAN_COLOR, linestyle="--", label="std (right)")
    twin.set_ylabel(f"std of {metric}")
    _clip_percent(ax, metric, table[["min", "max"]].to_numpy().ravel(), axis="y")
    _epoch_axis(ax)
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    # above the Axes, under the title (the std line crossed a legend inside; the twin's labels are on the right)
    ax.legend(handles=handles, fontsize="small", loc="lower left", bbox_to_anchor=(0.0, 1.01), ncols=2, borderaxespad=0.0)
    ax.set_title(ax.get_title(), pad=44)
    return ax


def plot_rank_stability(epochs: pd.DataFrame, *, metric: str = DEFAULT_METRIC, ax: Axes | None = None) -> Axes:
    """Spearman and Kendall correlation of each epoch's ranking of the seeds with the final ranking."""
    table = epoch_rank_stability(epochs, metric)
    ax = _axes(ax)
    few = len(table) <= 30  # markers only where they can be told apart
    ax.plot(table["epoch"], table["spearman"], marker="o" if few else None, label="Spearman ρ")
    ax.plot(table["epoch"], table["kendall"], marker="s" if few else None, label="Kendall τ")
    ax.axhline(0, color="0.6", linewidth=0.8)
    ax.set(xlabel="epoch", ylabel="rank correlation with the final epoch", ylim=(-1.05, 1.05))
    ax.set_title(f"When the seeds' final {metric} ranking shows")
    _epoch_axis(ax)
    _legend_outside(ax)
    return ax


def plot_expected_max(
    trials: Values,
    *,
    metric: str = DEFAULT_METRIC,
    method: str = "unbiased",
    mode: str = "max",
    status: str | None = OK,
    ax: Axes | None = None,
) -> Axes:
    """Expected best score of k trials against k (Dodge et al. 2019).

    With the normal expectation ``mean + e_k std`` and the mean (k = 1) for reference.
    """
    table = expected_max(trials, method=method, metric=metric, mode=mode, status=status)
    ax = _axes(ax)
    ax.plot(table["k"], table["expected_max"], marker=".", label=f"E[best of k] ({method})")
    if table["normal"].notna().any():
        ax.plot(table["k"], table["normal"], linestyle=":", color="k", label="normal: mean + e_k std")
    mean = float(table["expected_max"].iloc[0])
    d = decimals(table["expected_max"])
    ax.axhline(mean, color=MEAN_COLOR, linestyle="--", label=f"mean {mean:.{d}f}")
    if len(table) >= 20:
        ax.set_xscale("log")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # k is a count
    ax.set(xlabel="k (trials)", ylabel=f"expected best {metric}", title=f"Expected best {metric} of k trials")
    _clip_percent(ax, metric, table[["expected_max", "normal"]].to_numpy().ravel(), axis="y")
    _legend_outside(ax)
    return ax


def plot_split_correlation(
    trials: pd.DataFrame,
    *,
    x: str = DEFAULT_METRIC,
    y: str = "v2_top1",
    status: str | None = OK,
    ax: Axes | None = None,
) -> Axes:
    """Scatter of two metrics over seeds (val against V2) with a least-squares line and the correlations."""
    corr = split_correlation(trials, x, y, status=status)
    data = select_status(trials, status)[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    ax = _axes(ax)
    fit = len(data) >= 2 and data[x].nunique() > 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # polyfit on degenerate bootstrap resamples
        sns.regplot(data=data, x=x, y=y, ax=ax, fit_reg=fit, ci=95 if len(data) >= 10 else None, seed=0)
    _clip_percent(ax, x, data[x], axis="x")
    _clip_percent(ax, y, data[y], axis="y")
    ax.set_title(
        f"{y} against {x}: Pearson r = {corr['pearson']:.2f} "
        f"[{corr['pearson_ci_low']:.2f}, {corr['pearson_ci_high']:.2f}], "
        f"Spearman ρ = {corr['spearman']:.2f} (n = {corr['n']})",
        fontsize="small",
    )
    return ax


def plot_compare(
    a: Values,
    b: Values,
    *,
    metric: str = DEFAULT_METRIC,
    labels: Sequence[str] = ("A", "B"),
    status: str | None = OK,
    ax: Axes | None = None,
) -> Axes:
    """Both arms' seeds as points and each arm's mean with its 95 % t-interval (:func:`analysis.stats.mean_ci`).

    The title carries the difference of means with its Welch interval and P(A > B)
    (see :func:`analysis.compare`).
    """
    result = compare(a, b, metric, status=status)
    arms = [metric_values(v, metric, status) for v in (a, b)]
    data = pd.DataFrame(
        {"arm": np.repeat(list(labels), [v.size for v in arms]), metric: np.concatenate(arms)}
    )
    ax = _axes(ax)
    sns.stripplot(data=data, x="arm", y=metric, hue="arm", legend=False, alpha=0.6, jitter=0.15, ax=ax)
    for position, values in enumerate(arms):
        low, high, _ = mean_ci(values)
        mean = float(np.mean(values))
        yerr = np.array([[mean - low], [high - mean]]) if np.isfinite(low) else None
        ax.errorbar([position], [mean], yerr=yerr, fmt="D", color="k", capsize=6, zorder=3)
    _clip_percent(ax, metric, data[metric], axis="y")
    d = decimals(spread=float(result["delta_ci_high"] - result["delta_ci_low"]) / 2)
    ax.set_title(
        f"Δ = {result['delta']:.{d}f} [{result['delta_ci_low']:.{d}f}, {result['delta_ci_high']:.{d}f}], "
        f"P({labels[0]} > {labels[1]}) = {result['p_a_gt_b']:.2f}",
        fontsize="small",
    )
    ax.set(xlabel="")
    return ax


def plot_grid_heatmap(
    trials: pd.DataFrame,
    *,
    x: str,
    y: str,
    metric: str = DEFAULT_METRIC,
    status: str | None = OK,
    ax: Axes | None = None,
) -> Axes:
    """Mean ``metric`` of each (``x``, ``y``) grid point over seeds (and over any other params), annotated."""
    require_columns(trials, [x, y, metric], "trials")
    data = select_status(trials, status).copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    if data[metric].notna().sum() == 0:
        raise ValueError(f"plot_grid_heatmap: no finite {metric!r} among the trials")
    table = data.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
    ax = _axes(ax)
    d = decimals(table.to_numpy().ravel())
    sns.heatmap(table, annot=True, fmt=f".{d}f", cmap="viridis", cbar_kws={"label": f"mean {metric}"}, ax=ax)
    ax.set_title(f"mean {metric} over seeds")
    return ax


def plot_grid_summary(summary: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Draw a :func:`analysis.grid_summary` table: one horizontal bar per configuration, best at the top.

    Each bar carries its confidence interval; configurations that cannot be
    told from the next one (``distinguishable_from_next`` not True) are drawn
    lighter. The x axis is zoomed onto the means and intervals.
    """
    require_columns(summary, ["metric", "mean", "ci_low", "ci_high", "distinguishable_from_next"], "summary")
    table = summary.dropna(subset=["mean"])
    if table.empty:
        raise ValueError("plot_grid_summary: no configuration with a mean")
    names = list(table.columns[: table.columns.get_loc("metric")])
    labels = [", ".join(f"{p}={row[p]}" for p in names) for _, row in table.iterrows()]
    ax = _axes(ax)
    ci = table[["ci_low", "ci_high"]].to_numpy(float)
    xerr = np.nan_to_num(np.abs(ci - table[["mean"]].to_numpy(float)).T, nan=0.0)
    bars = ax.barh(labels, table["mean"], xerr=xerr, capsize=3, color=SPREAD_COLOR)
    for bar, flag in zip(bars, table["distinguishable_from_next"], strict=True):
        bar.set_alpha(0.9 if flag is True else 0.5)
    low = np.nanmin(np.concatenate([ci[:, 0], table["mean"]]))
    high = np.nanmax(np.concatenate([ci[:, 1], table["mean"]]))
    margin = max(high - low, 1e-6) * 0.15
    ax.set_xlim(low - margin, high + margin)
    _clip_percent(ax, str(table["metric"].iloc[0]), table["mean"])
    ax.invert_yaxis()
    metric = table["metric"].iloc[0]
    ax.set(xlabel=f"mean {metric}", title=f"Grid ranking by mean {metric}, best first")
    return ax


def plot_interaction(table: pd.DataFrame, *, x: str, hue: str, y: str = "mean", ax: Axes | None = None) -> Axes:
    """Draw a crossed study's :func:`analysis.factorial.cell_table`: the cell means (``y``) with
    their intervals (``ci_low``/``ci_high``), the levels of ``x`` (the procedures) along the x
    axis and one line per level of ``hue`` (the architectures). Lines that cross are a ranking
    that flips. The lines are dodged a little so that their intervals do not overlap."""
    require_columns(table, [x, hue, y, "ci_low", "ci_high"], "table")
    if table[y].notna().sum() == 0:
        raise ValueError("plot_interaction: no cell with a mean")
    ax = _axes(ax)
    xs = list(dict.fromkeys(table[x].astype(str)))
    hues = list(dict.fromkeys(table[hue].astype(str)))
    width = 0.15 / max(len(hues) - 1, 1)
    for k, level in enumerate(hues):
        rows = table[table[hue].astype(str) == level].set_index(table[x].astype(str)[table[hue].astype(str) == level]).reindex(xs)
        pos = np.arange(len(xs)) + (k - (len(hues) - 1) / 2) * width
        means = rows[y].to_numpy(float)
        err = np.nan_to_num(np.abs(rows[["ci_low", "ci_high"]].to_numpy(float) - means[:, None]).T, nan=0.0)
        ax.errorbar(pos, means, yerr=err, marker="o", capsize=3, label=f"{hue}={level}")
    ax.set_xticks(np.arange(len(xs)), xs)
    metric = str(table["metric"].iloc[0]) if "metric" in table.columns else y
    ax.set(xlabel=x, ylabel=f"{y} {metric}" if metric != y else y, title=f"{hue} across {x}: cell means and intervals")
    ax.legend(title=None, fontsize="small")
    return ax
