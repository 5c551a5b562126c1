"""Figures of aggregates across tasks: they draw the tables of :mod:`analysis.aggregate`.

Like every ``plot_*`` of :mod:`analysis`: the table first, ``ax=`` (a new figure when
``None``), the Axes returned, no ``plt.show()`` and no global style change.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from analysis._tables import require_columns
from analysis.plots import _axes, _legend_outside

__all__ = ["plot_aggregate", "plot_improvement", "plot_profiles"]

LABELS = {"iqm": "IQM (interquartile mean)", "mean": "mean", "median": "median", "optimality_gap": "optimality gap (lower is better)"}


def _colors(arms) -> dict:
    return dict(zip(arms, sns.color_palette(n_colors=len(arms)), strict=True))


def plot_aggregate(table: pd.DataFrame, *, metric: str = "iqm", ax: Axes | None = None) -> Axes:
    """Draw one metric of an :func:`analysis.aggregate_scores` table (rliable's interval
    estimates): one row per arm, its interval as a bar and its estimate as a tick, each arm
    in its own color. The metrics have their own scales: one Axes each."""
    require_columns(table, ["arm", "metric", "estimate", "ci_low", "ci_high"], "table")
    rows = table[table["metric"] == metric]
    if rows.empty:
        raise ValueError(f"plot_aggregate: no metric {metric!r} in the table; metrics: {', '.join(map(str, table['metric'].unique()))}")
    ax = _axes(ax)
    colors = _colors(list(rows["arm"]))
    y = np.arange(len(rows))
    ax.barh(y, rows["ci_high"] - rows["ci_low"], left=rows["ci_low"], height=0.6, color=[colors[a] for a in rows["arm"]], alpha=0.6)
    ax.vlines(rows["estimate"], y - 0.3, y + 0.3, color="k", linewidth=2)
    ax.margins(x=0.1)
    ax.set_yticks(y, [str(a) for a in rows["arm"]])
    ax.invert_yaxis()
    tasks = f" over {rows['n_tasks'].iloc[0]} tasks" if "n_tasks" in rows.columns else ""
    ax.set(xlabel=LABELS.get(metric, metric), title=f"{LABELS.get(metric, metric).split(' (')[0]}{tasks}")
    return ax


def plot_profiles(profiles: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Draw :func:`analysis.score_profiles`: each arm's share of runs above tau, a line with its
    bootstrap band; a curve above another everywhere dominates it (stochastic dominance)."""
    require_columns(profiles, ["arm", "tau", "fraction", "ci_low", "ci_high"], "profiles")
    if profiles.empty:
        raise ValueError("plot_profiles: an empty table")
    ax = _axes(ax)
    arms = list(dict.fromkeys(profiles["arm"]))
    colors = _colors(arms)
    for arm in arms:
        rows = profiles[profiles["arm"] == arm].sort_values("tau")
        ax.plot(rows["tau"], rows["fraction"], color=colors[arm], label=str(arm))
        ax.fill_between(rows["tau"], rows["ci_low"], rows["ci_high"], color=colors[arm], alpha=0.2, linewidth=0)
    ax.set(xlabel="normalized score τ", ylabel="fraction above τ", ylim=(-0.02, 1.02), title="Performance profiles")
    _legend_outside(ax)
    return ax


def plot_improvement(table: pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Draw :func:`analysis.improvement_probabilities`: one row per pair ``P(X > Y)``, the
    estimate and its interval, with 0.5 (no tendency either way) marked."""
    require_columns(table, ["x", "y", "p", "ci_low", "ci_high"], "table")
    if table.empty:
        raise ValueError("plot_improvement: an empty table")
    ax = _axes(ax)
    labels = [f"P({x} > {y})" for x, y in zip(table["x"], table["y"], strict=True)]
    y = np.arange(len(table))
    ax.barh(y, table["ci_high"] - table["ci_low"], left=table["ci_low"], height=0.6, color="C0", alpha=0.35)
    ax.plot(table["p"], y, "o", color="C0")
    ax.axvline(0.5, color="k", linestyle=":", linewidth=1)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set(xlim=(0.0, 1.0), xlabel="probability of improvement", title="P(X > Y), averaged over tasks")
    return ax
