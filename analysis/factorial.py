"""Crossed studies: does a comparison survive a change of procedure?

A crossed (factorial) study trains every level of one factor (the *arms*: architectures,
optimizers, ...) under every level of another (the *conditions*: training procedures, recipes,
...) with seeds in every cell. "ResNet strikes back" (Wightman, Touvron, Jégou 2021) shows why:
trained with A2, ResNet-50 beats DeiT-S; trained with T2 (DeiT's procedure), DeiT-S wins.
These functions answer that question for a study's tidy trials table (one row per trial, one
column per factor, the final metric):

- :func:`cell_table`: n, mean, std and the t-interval of the mean per cell;
- :func:`two_way_anova`: main effects and the interaction of a two-way model with seed
  replication (F-tests, partial eta² and omega²), computed here by least squares and equal to
  statsmodels' ``ols('y ~ C(a) * C(b)')`` + ``anova_lm`` (type II; type III with sum contrasts);
- :func:`interaction_2x2`: a 2 × 2 design's difference of differences with its Welch interval;
- :func:`ranking_flip`: which arm wins under each condition, P(it is the best) and P(the winner
  differs between conditions), by a seeded bootstrap over seeds within cells;
- :func:`pairwise`: every pair of cells (Welch tests, Holm's correction) and
  :func:`best_set`, the cells that no other cell beats significantly;
- :func:`factorial_analysis`: all of it at once, the two factors detected when not given, with the
  verdict in one sentence.

Only trials with ``status == "ok"`` count. The plot is :func:`analysis.plots.plot_interaction`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis._tables import OK, check_mode, counted_rows, jsonable, quiet, require_columns
from analysis.contract import (
    DEFAULT_METRIC,
    METRICS,
    PACK_ID,
    RUNTIME_COLUMNS,
    SEED_COLUMNS,
    default_mode,
)
from analysis.stats import CONFIDENCE, N_RESAMPLES, mean_ci

__all__ = [
    "Factorial",
    "best_set",
    "cell_table",
    "factorial_analysis",
    "find_factors",
    "holm",
    "interaction_2x2",
    "pairwise",
    "ranking_flip",
    "two_way_anova",
]

# keys that name a training procedure: the condition (x axis) when a study crosses one
PROCEDURE_KEYS = ("recipe", "procedure")
# keys that name the compared thing: the arm (one line per level) when a study crosses one
ARM_KEYS = ("model", "case")
# columns of a trials table that are never a factor (results, seeds, bookkeeping)
_NOT_FACTORS = frozenset(
    {*METRICS, *SEED_COLUMNS, *RUNTIME_COLUMNS, PACK_ID, "trial_id", "status", "study", "epochs_done",
     "n_val", "n_v2", "run_time_s", "hostname", "node_id", "pid", "error"}
)  # fmt: skip


# --------------------------------------------------------------------------- the cells


def _levels(series: pd.Series) -> list[str]:
    """A factor's levels as text, in the order of the values (numbers numerically)."""
    values = series.dropna().unique()
    try:
        values = sorted(values)
    except TypeError:
        values = sorted(values, key=str)
    return list(dict.fromkeys(str(v) for v in values))


def _tidy(trials: pd.DataFrame, factors: Sequence[str], metric: str, status: str | None) -> pd.DataFrame:
    """The counted rows: factor levels as text, the metric as a finite float."""
    if len(factors) != 2 or factors[0] == factors[1]:
        raise ValueError(f"a crossed study has two distinct factors, got {list(factors)}")
    require_columns(trials, [*factors, metric], "trials")
    rows = counted_rows(trials, status)
    rows = rows[rows[list(factors)].notna().all(axis=1)]  # a trial without a level is in no cell
    data = pd.DataFrame({f: rows[f].astype(str) for f in factors})
    data["y"] = pd.to_numeric(rows[metric], errors="coerce").to_numpy(float)
    return data[np.isfinite(data["y"])].reset_index(drop=True)


def _cells(trials: pd.DataFrame, factors: Sequence[str], metric: str, status: str | None) -> dict[tuple[str, str], np.ndarray]:
    """{(level of factor 0, level of factor 1): counted values}, every combination of the levels
    in the trials table (an empty array for a cell without counted trials)."""
    data = _tidy(trials, factors, metric, status)
    a, b = (_levels(trials[f]) for f in factors)
    if min(len(a), len(b)) < 2:
        raise ValueError(f"a crossed study has 2 levels or more per factor: {factors[0]} has {len(a)}, {factors[1]} {len(b)}")
    grouped = {key: sub["y"].to_numpy() for key, sub in data.groupby(list(factors), sort=False)}
    return {(x, y): grouped.get((x, y), np.zeros(0)) for x in a for y in b}


def cell_table(
    trials: pd.DataFrame,
    *,
    factors: Sequence[str],
    metric: str = DEFAULT_METRIC,
    status: str | None = OK,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per cell (every combination of the two factors' levels, as text): ``n``,
    ``mean``, ``std``, ``sem`` and ``ci_low``/``ci_high``, the t-interval of the cell's mean
    over its seeds (:func:`analysis.stats.mean_ci`; NaN below 2 seeds)."""
    rows = []
    for (x, y), values in _cells(trials, factors, metric, status).items():
        n = values.size
        with quiet():
            std = float(np.std(values, ddof=1)) if n > 1 else float("nan")
        interval = mean_ci(values, confidence)
        rows.append({
            factors[0]: x, factors[1]: y, "metric": metric, "n": n,
            "mean": float(values.mean()) if n else float("nan"), "std": std,
            "sem": std / np.sqrt(n) if n > 1 else float("nan"),
            "ci_low": interval.low, "ci_high": interval.high,
        })  # fmt: skip
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the two-way model


def _rss(y: np.ndarray, x: np.ndarray) -> float:
    if x.shape[1] == 0:
        return float(y @ y)
    beta = np.linalg.lstsq(x, y, rcond=None)[0]
    residual = y - x @ beta
    return float(residual @ residual)


def _coding(codes: np.ndarray, k: int, typ: int) -> np.ndarray:
    """Columns of a factor with ``k`` levels: treatment (type II) or sum (type III) contrasts."""
    if typ == 2:
        return np.eye(k)[codes][:, 1:]
    contrasts = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])
    return contrasts[codes]


def two_way_anova(
    trials: pd.DataFrame,
    *,
    factors: Sequence[str],
    metric: str = DEFAULT_METRIC,
    status: str | None = OK,
    typ: int = 2,
) -> pd.DataFrame:
    """The two-way ANOVA of ``metric`` on ``factors`` with their interaction, the seeds as replicates.

    One row per term (the two factors, ``"A:B"`` and ``Residual``; type 3 adds ``Intercept``
    first) with ``sum_sq``, ``df``, ``F``, ``PR(>F)`` (the names of statsmodels' ``anova_lm``),
    ``partial_eta_sq`` = SS / (SS + SS_residual) and ``partial_omega_sq`` = df (MS - MS_res) /
    (df MS + (N - df) MS_res), the less biased effect size.

    ``typ=2`` (the default): each main effect adjusted for the other, the interaction for both;
    equals ``anova_lm(ols('y ~ C(a) * C(b)'), typ=2)``. ``typ=3``: every term adjusted for all
    others with sum-to-zero contrasts; equals ``anova_lm(ols('y ~ C(a, Sum) * C(b, Sum)'), typ=3)``.
    The interaction's row is the same in both; the main effects differ only when the cells have
    unequal seeds. Type II is the default because it tests each main effect with the most power
    when the interaction is absent, which is when a main effect means something on its own.
    Every cell needs a counted trial; with one seed per cell the residual has no degree of
    freedom and F, p and the effect sizes are NaN.
    """
    if typ not in (2, 3):
        raise ValueError(f"typ must be 2 or 3, got {typ!r}")
    data = _tidy(trials, factors, metric, status)
    cells = _cells(trials, factors, metric, status)
    empty = [key for key, values in cells.items() if values.size == 0]
    if empty:
        raise ValueError(f"two_way_anova: no counted trial in cell(s) {', '.join(map(str, empty))}")
    levels = [_levels(trials[f]) for f in factors]
    i, j = len(levels[0]), len(levels[1])
    ca, cb = (pd.Categorical(data[f], categories=lv).codes for f, lv in zip(factors, levels, strict=True))
    y = data["y"].to_numpy()
    n = y.size
    one = np.ones((n, 1))
    xa, xb = _coding(ca, i, typ), _coding(cb, j, typ)
    xab = np.einsum("ni,nj->nij", xa, xb).reshape(n, -1)
    full = np.hstack([one, xa, xb, xab])
    rss_full = _rss(y, full)
    df_res = n - i * j
    names = [*factors, f"{factors[0]}:{factors[1]}"]
    dfs = [i - 1, j - 1, (i - 1) * (j - 1)]
    if typ == 2:
        additive = np.hstack([one, xa, xb])
        rss_add = _rss(y, additive)
        ss = [_rss(y, np.hstack([one, xb])) - rss_add, _rss(y, np.hstack([one, xa])) - rss_add, rss_add - rss_full]
    else:
        blocks = [one, xa, xb, xab]
        ss = [_rss(y, np.hstack([b for k, b in enumerate(blocks) if k != drop])) - rss_full for drop in range(4)]
        names, dfs = ["Intercept", *names], [1, *dfs]
    nan = float("nan")
    with quiet():
        ms_res = rss_full / df_res if df_res > 0 else nan
        rows = []
        for name, s, d in zip(names, ss, dfs, strict=True):
            f = (s / d) / ms_res
            rows.append({
                "term": name, "sum_sq": s, "df": float(d), "F": f,
                "PR(>F)": float(stats.f.sf(f, d, df_res)) if df_res > 0 else nan,
                "partial_eta_sq": s / (s + rss_full) if df_res > 0 else nan,
                "partial_omega_sq": (s - d * ms_res) / (s + (n - d) * ms_res),
            })  # fmt: skip
    rows.append({"term": "Residual", "sum_sq": rss_full, "df": float(df_res), "F": nan, "PR(>F)": nan, "partial_eta_sq": nan, "partial_omega_sq": nan})
    return pd.DataFrame(rows).set_index("term")


# --------------------------------------------------------------------------- the 2 x 2 design


def interaction_2x2(
    trials: pd.DataFrame,
    *,
    factors: Sequence[str],
    metric: str = DEFAULT_METRIC,
    status: str | None = OK,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """The difference of differences of a 2 × 2 design, with its interval.

    With arms ``a1, a2`` (the levels of ``factors[0]``) and conditions ``c1, c2`` (of
    ``factors[1]``), in level order: ``delta = (m[a1,c1] - m[a2,c1]) - (m[a1,c2] - m[a2,c2])``,
    how much the advantage of ``a1`` over ``a2`` changes from ``c1`` to ``c2``.

    The interval is Welch's: standard error ``sqrt(sum s²/n)`` over the four cells,
    Welch-Satterthwaite degrees of freedom. Why Welch: seeds of different architectures and
    procedures spread differently, and with equal seeds per cell the Welch and pooled standard
    errors are the same number (they differ only in degrees of freedom), so Welch costs a
    little width when the spreads are equal and keeps its level when they are not. The pooled
    version (``pooled_*``: MS_residual, N - 4 degrees of freedom) is given too: its p equals
    the interaction's F-test of :func:`two_way_anova` (t² = F). Every cell needs 2 seeds.
    """
    cells = _cells(trials, factors, metric, status)
    levels = [_levels(trials[f]) for f in factors]
    if [len(lv) for lv in levels] != [2, 2]:
        raise ValueError(f"interaction_2x2 needs 2 levels per factor, the design is {len(levels[0])} x {len(levels[1])}: use two_way_anova")
    (a1, a2), (c1, c2) = levels
    order = [(a1, c1), (a2, c1), (a1, c2), (a2, c2)]
    values = [cells[k] for k in order]
    if min(v.size for v in values) < 2:
        raise ValueError(f"interaction_2x2: every cell needs 2 counted seeds, got {[v.size for v in values]}")
    means = np.array([v.mean() for v in values])
    var_n = np.array([v.var(ddof=1) / v.size for v in values])
    sizes = np.array([v.size for v in values])
    delta = float(means @ np.array([1.0, -1.0, -1.0, 1.0]))
    out: dict[str, Any] = {"arms": [a1, a2], "conditions": [c1, c2], "delta": delta, "method": "welch"}
    with quiet():
        se = float(np.sqrt(var_n.sum()))
        dof = float(var_n.sum() ** 2 / np.sum(var_n**2 / (sizes - 1)))
        ms_res = float(sum(((v - v.mean()) ** 2).sum() for v in values) / (sizes.sum() - 4))
        pooled_se = float(np.sqrt(ms_res * np.sum(1.0 / sizes)))
        for prefix, s, d in (("", se, dof), ("pooled_", pooled_se, float(sizes.sum() - 4))):
            half = float(stats.t.ppf(0.5 + confidence / 2, d)) * s
            out |= {
                f"{prefix}se": s, f"{prefix}df": d, f"{prefix}ci_low": delta - half, f"{prefix}ci_high": delta + half,
                f"{prefix}p": float(2 * stats.t.sf(abs(delta) / s, d)) if s > 0 else float("nan"),
            }  # fmt: skip
    return out



# --------------------------------------------------------------------------- the ranking flip


def _argbest(means: np.ndarray, mode: str) -> np.ndarray:
    """Index of the best arm along the last axis; ties: the first in level order."""
    return np.argmax(means, axis=-1) if mode == "max" else np.argmin(means, axis=-1)


def bootstrap_cell_means(
    cells: dict[tuple[str, str], np.ndarray], arms: Sequence[str], conditions: Sequence[str], n_resamples: int, random_state: int
) -> np.ndarray:
    """Bootstrap cell means, shape (n_resamples, conditions, arms): each cell's seeds resampled
    with replacement, independently of the other cells. The rule (so that another
    implementation draws the same numbers): one ``numpy.random.default_rng(random_state)``; for
    each condition in order, for each arm in order, ``rng.integers(0, n, size=(n_resamples, n))``
    indexes the cell's n values."""
    rng = np.random.default_rng(random_state)
    out = np.empty((n_resamples, len(conditions), len(arms)))
    for c, cond in enumerate(conditions):
        for a, arm in enumerate(arms):
            values = cells[(arm, cond)]
            out[:, c, a] = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    return out


def ranking_flip(
    trials: pd.DataFrame,
    *,
    factors: Sequence[str],
    metric: str = DEFAULT_METRIC,
    mode: str | None = None,
    status: str | None = OK,
    n_resamples: int = N_RESAMPLES,
    random_state: int = 0,
) -> dict[str, Any]:
    """Which arm (level of ``factors[0]``) wins under each condition (level of ``factors[1]``).

    Returns ``winners`` (one record per condition: ``condition``, ``winner``, its ``mean``,
    ``runner_up``, ``delta`` = winner's mean minus the runner-up's, ``p_best`` = the bootstrap
    probability that the winner is the best arm under that condition), ``flips`` (whether the
    observed winner differs between conditions) and ``p_differs`` (the bootstrap probability
    that the winner is not the same under every condition). The bootstrap resamples the seeds
    within each cell (:func:`bootstrap_cell_means`), seeded by ``random_state``. With few seeds
    a bootstrap is overconfident (it knows only the seeds it has: see
    :func:`analysis.stats.mean_ci`), so read P = 0.97 from 3 seeds per cell as less sure than
    that. Every cell needs 2 counted seeds.
    """
    mode = check_mode(mode or default_mode(metric))
    cells = _cells(trials, factors, metric, status)
    arms, conditions = (_levels(trials[f]) for f in factors)
    small = {k: v.size for k, v in cells.items() if v.size < 2}
    if small:
        raise ValueError(f"ranking_flip: every cell needs 2 counted seeds; {', '.join(f'{k}: {n}' for k, n in small.items())}")
    observed = np.array([[cells[(a, c)].mean() for a in arms] for c in conditions])
    boot = bootstrap_cell_means(cells, arms, conditions, n_resamples, random_state)
    best = _argbest(observed, mode)
    boot_best = _argbest(boot, mode)  # (n_resamples, conditions)
    sign = 1.0 if mode == "max" else -1.0
    winners = []
    for c, cond in enumerate(conditions):
        order = np.argsort(-sign * observed[c], kind="stable")
        runner = int(order[1]) if order[0] == best[c] else int(order[0])
        winners.append({
            "condition": cond, "winner": arms[best[c]], "mean": float(observed[c, best[c]]),
            "runner_up": arms[runner], "delta": float(observed[c, best[c]] - observed[c, runner]),
            "p_best": float(np.mean(boot_best[:, c] == best[c])),
        })  # fmt: skip
    differs = np.any(boot_best != boot_best[:, :1], axis=1)
    return {
        "factors": list(factors), "metric": metric, "mode": mode, "winners": winners,
        "flips": bool(len(set(best.tolist())) > 1), "p_differs": float(differs.mean()), "n_resamples": n_resamples,
    }  # fmt: skip


def _level_name(factor: str, level: str) -> str:
    """A level as a sentence names it: a name itself (``resnet10t``), a number with its key (``lr=0.002``)."""
    return level if any(ch.isalpha() for ch in level) and level not in ("True", "False", "nan", "inf") else f"{factor}={level}"


def flip_sentence(flip: dict[str, Any]) -> str:
    """The verdict in one sentence: "resnet10t wins under A2 (P = 0.97), vit wins under T2
    (P = 0.91): the ranking flips (P = 0.88 that the winner differs between recipes)"."""
    arm, cond = flip["factors"]
    parts = [
        f"{_level_name(arm, w['winner'])} wins under {_level_name(cond, w['condition'])} (P = {w['p_best']:.2f})"
        for w in flip["winners"]
    ]
    verdict = "the ranking flips" if flip["flips"] else "no flip"
    return f"{', '.join(parts)}: {verdict} (P = {flip['p_differs']:.2f} that the winner differs between {cond} levels)"


# --------------------------------------------------------------------------- many arms


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN p-values stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def pairwise(
    trials: pd.DataFrame,
    *,
    factors: Sequence[str],
    metric: str = DEFAULT_METRIC,
    status: str | None = OK,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every pair of cells (arms) compared: ``a``, ``b`` (the cells as ``"level0 / level1"``),
    ``delta`` (mean a - mean b), ``p`` (Welch's two-sided t-test; NaN below 2 seeds in a cell),
    ``p_holm`` (Holm's correction over all pairs, which holds the family-wise error at
    ``alpha``) and ``significant`` (``p_holm < alpha``)."""
    cells = _cells(trials, factors, metric, status)
    names = {key: f"{key[0]} / {key[1]}" for key in cells}
    rows = []
    for ka, kb in itertools.combinations(cells, 2):
        x, y = cells[ka], cells[kb]
        p = float("nan")
        if min(x.size, y.size) > 1:
            with quiet():
                p = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
        delta = float(x.mean() - y.mean()) if x.size and y.size else float("nan")
        rows.append({"a": names[ka], "b": names[kb], "delta": delta, "p": p})
    out = pd.DataFrame(rows, columns=["a", "b", "delta", "p"])
    out["p_holm"] = holm(out["p"].to_numpy())
    out["significant"] = out["p_holm"] < alpha
    return out


def best_set(pairs: pd.DataFrame, *, mode: str = "max") -> list[str]:
    """The best arm's confidence set: the arms of a :func:`pairwise` table that no other arm
    beats significantly (Holm-corrected). The truly best arm is outside it only if a test
    rejects a true null, which Holm's correction keeps below ``alpha``."""
    check_mode(mode)
    arms = list(dict.fromkeys([*pairs["a"], *pairs["b"]]))
    beaten = set()
    for row in pairs[pairs["significant"]].itertuples():
        a_better = (row.delta > 0) == (mode == "max")
        beaten.add(row.b if a_better else row.a)
    return [a for a in arms if a not in beaten]


# --------------------------------------------------------------------------- the whole analysis


def find_factors(trials: pd.DataFrame, params: Sequence[str] | None = None, *, status: str | None = OK) -> list[str]:
    """The two factors of a crossed study: ``[arm, condition]``.

    Candidates: ``params`` (a grid's keys; those that are columns of ``trials``) when given, else every column of ``trials`` that is
    not a result, seed or bookkeeping column and has between 2 and n/2 distinct values. Keys
    that vary together (a model with its own kwargs and image size) are one factor, named by
    the first of them. Exactly two must remain, else ``ValueError``. The condition is a
    procedure key (``recipe``) when there is one, the arm a ``model`` key; otherwise the order
    of ``params`` (or of the columns)."""
    rows = counted_rows(trials, status)
    names = [p for p in params if p in trials.columns] if params is not None else [c for c in trials.columns if c not in _NOT_FACTORS]
    varied, partitions = [], []
    for name in names:
        try:
            codes = tuple(pd.factorize(rows[name].astype(str))[0])
        except TypeError:
            continue
        distinct = len(set(codes))
        if distinct < 2 or (params is None and distinct > len(rows) / 2):
            continue
        if codes in partitions:  # varies with a factor already found
            continue
        varied.append(name)
        partitions.append(codes)
    if len(varied) != 2:
        raise ValueError(f"a crossed study varies exactly two factors; varied: {varied or 'none'} (name them with factors=)")
    if varied[0] in PROCEDURE_KEYS or varied[1] in ARM_KEYS:
        varied.reverse()
    return varied


@dataclasses.dataclass(frozen=True)
class Factorial:
    """The analysis of a crossed study (:func:`factorial_analysis`).

    Attributes:
        factors: ``(arm, condition)``: whose ranking is checked, and across what.
        metric, mode: the metric and the direction in which it is better.
        cells: :func:`cell_table`.
        anova: :func:`two_way_anova` (None when a cell has no trial).
        interaction: :func:`interaction_2x2` for a 2 × 2 design with 2 seeds per cell, else None.
        flip: :func:`ranking_flip` (None below 2 seeds in a cell).
        pairs: :func:`pairwise`; best: :func:`best_set`.
        sentence: the verdict in one sentence.
    """

    factors: tuple[str, str]
    metric: str
    mode: str
    cells: pd.DataFrame
    anova: pd.DataFrame | None
    interaction: dict[str, Any] | None
    flip: dict[str, Any] | None
    pairs: pd.DataFrame
    best: list[str]
    sentence: str

    def record(self) -> dict[str, Any]:
        """The numbers as plain values (what a status, a report's summary.json and the browser carry)."""
        term = f"{self.factors[0]}:{self.factors[1]}"
        row = self.anova.loc[term] if self.anova is not None else None
        return jsonable({
            "factors": list(self.factors), "metric": self.metric, "mode": self.mode, "sentence": self.sentence,
            "interaction_p": None if row is None else row["PR(>F)"],
            "interaction_partial_eta_sq": None if row is None else row["partial_eta_sq"],
            "interaction_line": self.interaction_line(), "interaction": self.interaction, "flip": self.flip,
            "best": self.best,
        })  # fmt: skip

    def interaction_line(self) -> str:
        """The interaction in words: the 2 × 2 difference of differences with its interval, or the F-test."""
        if self.interaction is not None:
            i, (arm, cond) = self.interaction, self.factors
            a1, a2 = (_level_name(arm, a) for a in i["arms"])
            c1, c2 = (_level_name(cond, c) for c in i["conditions"])
            return (
                f"interaction (difference of differences: {a1} - {a2} under {c1} minus under {c2}): "
                f"{i['delta']:.3g} [{i['ci_low']:.3g}, {i['ci_high']:.3g}] "
                f"({100 * CONFIDENCE:g} % Welch interval), p = {i['p']:.3g}"
            )
        if self.anova is None:
            return "interaction: not estimable (a cell has no counted trial)"
        row = self.anova.loc[f"{self.factors[0]}:{self.factors[1]}"]
        return (
            f"interaction {self.factors[0]} x {self.factors[1]}: F({row['df']:.0f}, {self.anova.loc['Residual', 'df']:.0f}) = "
            f"{row['F']:.3g}, p = {row['PR(>F)']:.3g}, partial eta² = {row['partial_eta_sq']:.3g}"
        )


def factorial_analysis(
    trials: pd.DataFrame,
    *,
    factors: Sequence[str] | None = None,
    params: Sequence[str] | None = None,
    metric: str | None = None,
    mode: str | None = None,
    status: str | None = OK,
    n_resamples: int = N_RESAMPLES,
    random_state: int = 0,
    alpha: float = 0.05,
) -> Factorial:
    """The analysis of a crossed study from its trials table.

    ``factors``: ``(arm, condition)``; when None they are found by :func:`find_factors` among
    ``params`` (a grid's keys, e.g. ``study.meta["params"]``) or the table's columns.
    ``metric`` defaults to ``val_top1``, ``mode`` to the metric's direction. Every combination
    of the factors' levels must have a trial (of any status; a search's sampled points are not
    crossed), else ``ValueError``; below 2 ok seeds in a cell the sentence says there is no
    verdict yet.
    """
    metric = metric or DEFAULT_METRIC
    mode = check_mode(mode or default_mode(metric))
    factors = tuple(factors) if factors is not None else tuple(find_factors(trials, params, status=status))
    require_columns(trials, factors, "trials")
    planned = trials[list(factors)].dropna().astype(str).drop_duplicates()
    levels = [_levels(trials[f]) for f in factors]
    if len(planned) < len(levels[0]) * len(levels[1]):  # a search's points, not a product of levels
        raise ValueError(
            f"{factors[0]} x {factors[1]} is not crossed: {len(planned)} of the {len(levels[0])} x {len(levels[1])} cells have a trial"
        )
    cells = cell_table(trials, factors=factors, metric=metric, status=status)
    try:
        anova = two_way_anova(trials, factors=factors, metric=metric, status=status)
    except ValueError:
        anova = None
    interaction = flip = None
    if (cells["n"] >= 2).all():
        flip = ranking_flip(trials, factors=factors, metric=metric, mode=mode, status=status, n_resamples=n_resamples, random_state=random_state)
        if len(cells) == 4:
            interaction = interaction_2x2(trials, factors=factors, metric=metric, status=status)
    pairs = pairwise(trials, factors=factors, metric=metric, status=status, alpha=alpha)
    if flip is not None:
        sentence = flip_sentence(flip)
    else:
        fewest = cells.loc[cells["n"].idxmin()]
        sentence = f"no verdict yet: every cell needs 2 ok seeds ({_level_name(factors[0], fewest[factors[0]])} under {_level_name(factors[1], fewest[factors[1]])} has {int(fewest['n'])})"
    return Factorial(factors, metric, mode, cells, anova, interaction, flip, pairs, best_set(pairs, mode=mode), sentence)
