"""Figure of a sequential seed study: the running mean and its anytime interval against n.

Follows :mod:`analysis.plots`: data first, keyword-only column names, an
optional ``ax=``, returns the Axes, no ``plt.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from analysis.contract import DEFAULT_METRIC

from analysis._tables import OK, metric_values
from analysis.plots import MEAN_COLOR, SPREAD_COLOR, _axes
from analysis.sequential import ACCURACY_BOUNDS, DEFAULT_LEVEL, DEFAULT_METHOD, confidence_sequence, fixed_t_interval_path

__all__ = ["plot_confidence_sequence"]


def plot_confidence_sequence(
    trials: pd.DataFrame | Sequence[float] | np.ndarray,
    *,
    metric: str = DEFAULT_METRIC,
    order: str | None = "seed",
    status: str | None = OK,
    level: float = DEFAULT_LEVEL,
    bounds: Sequence[float] = ACCURACY_BOUNDS,
    method: str = DEFAULT_METHOD,
    halfwidth: float | None = None,
    ax: Axes | None = None,
) -> Axes:
    """The running mean of ``metric`` with its confidence sequence and the fixed-n t-interval.

    ``trials``: a trials table (its ``status`` rows, sorted by ``order``, the
    order in which the seeds were added) or the values in order. The CS band is
    valid however often it is looked at; the dashed t-interval is valid only at
    one n fixed in advance. With ``halfwidth`` the first n at which the CS is
    that narrow is marked.
    """
    if isinstance(trials, pd.DataFrame) and order is not None and order in trials.columns:
        trials = trials.sort_values(order, kind="stable")
    values = metric_values(trials, metric, status)
    path = confidence_sequence(values, level=level, bounds=bounds, method=method)
    fixed = fixed_t_interval_path(values, level)
    ax = _axes(ax)
    finite = np.isfinite(path["halfwidth"]) & (path["halfwidth"] < (bounds[1] - bounds[0]) / 2)
    shown = path[finite]
    ax.fill_between(
        shown["n"], shown["lower"], shown["upper"], color=SPREAD_COLOR, alpha=0.3,
        label=f"{level:.0%} confidence sequence ({method})",
    )
    ax.plot(fixed["n"], fixed["lower"], color="0.4", linestyle="--", linewidth=1, label=f"fixed-n {level:.0%} t-interval")
    ax.plot(fixed["n"], fixed["upper"], color="0.4", linestyle="--", linewidth=1)
    ax.plot(path["n"], path["mean"], color=MEAN_COLOR, marker="." if len(path) <= 30 else None, label="running mean")
    ax.scatter(path["n"], values, s=8, color="0.6", zorder=1, label="seeds")
    if halfwidth is not None:
        hit = path.index[path["halfwidth"] <= halfwidth]
        if len(hit):
            n_stop = int(path.loc[hit[0], "n"])
            ax.axvline(n_stop, color="k", linewidth=0.8, label=f"half-width ≤ {halfwidth:g} at n = {n_stop}")
    if len(shown):  # keep the axis on the data, not on the bounds of the early, infinite intervals
        span = np.concatenate([shown["lower"], shown["upper"], values])
        pad = 0.05 * (span.max() - span.min() or 1.0)
        ax.set_ylim(span.min() - pad, span.max() + pad)
    ax.set(xlabel="seeds (n)", ylabel=metric, title=f"{metric}: running mean and anytime interval")
    ax.legend(fontsize="small")
    return ax
