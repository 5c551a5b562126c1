"""Statistics of hyperparameter grids: ranking configurations against seed noise.

"ResNet strikes back" searches a *coarse* grid and keeps the final checkpoint,
so that the validation set is not over-fitted. These functions say whether the
grid's winner stands out from the seed noise, and how much of the spread of
the scores the hyperparameters explain compared with the seeds.
Only ``status == "ok"`` trials count unless ``status`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.anova import anova_lm

from analysis.contract import DEFAULT_METRIC

from analysis._tables import (
    OK,
    as_list,
    check_mode,
    groups,
    metric_values,
    quiet,
    require_columns,
    select_status,
    status_counts,
)

from analysis.stats import CONFIDENCE, mean_ci

__all__ = ["grid_summary", "param_anova", "variance_components"]


def grid_summary(
    trials: pd.DataFrame,
    params: str | Sequence[str],
    metric: str = DEFAULT_METRIC,
    mode: str = "max",
    *,
    seed_std: float | None = None,
    status: str | None = OK,
    alpha: float = 0.05,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per configuration of ``params``, ranked best first.

    Columns: the params, ``metric`` (its name), ``rank``, ``n`` (counted trials), ``n_failed`` (other
    statuses), ``mean``, ``std``, ``sem``, ``ci_low``/``ci_high`` and ``ci_method``
    (the interval of the mean: ``"t"``, the t-interval of
    :func:`analysis.stats.mean_ci`, with 2 seeds or more; ``"z"``, ``mean +- z
    seed_std``, with one seed when ``seed_std`` is given; else NaN and ``None``),
    ``delta_to_next`` (mean minus the
    next-ranked mean, in the direction of ``mode``), ``p_vs_next`` and
    ``distinguishable_from_next`` (``p_vs_next < alpha``; pandas ``boolean``
    with NA when it cannot be told).

    ``p_vs_next`` is Welch's t-test when both configurations have 2 seeds or
    more, else a z-test with the seed noise ``seed_std`` known from a seed
    study (``sqrt(1/n_1 + 1/n_2) seed_std``), else NA: with one seed per point
    and no outside estimate, seed noise and hyperparameter effect cannot be
    told apart.
    """
    keys = _config_keys(trials, params, metric)
    check_mode(mode)
    rows = [
        {**key, **_config_stats(sub, metric, status, seed_std, confidence)}
        for key, sub in groups(trials, keys)
    ]
    table = pd.DataFrame(rows).sort_values("mean", ascending=(mode == "min"), na_position="last")
    table.insert(len(keys), "metric", metric)
    table.insert(len(keys) + 1, "rank", np.arange(1, len(table) + 1))
    return _with_next_tests(table.reset_index(drop=True), mode, seed_std, alpha)


def _config_keys(trials: pd.DataFrame, params: str | Sequence[str], metric: str) -> list[str]:
    keys = as_list(params)
    if not keys:
        raise ValueError("params is empty: name the hyperparameter column(s) of the grid")
    require_columns(trials, [*keys, metric], "trials")
    if trials.empty:
        raise ValueError("trials is empty")
    return keys


def _config_stats(
    sub: pd.DataFrame, metric: str, status: str | None, seed_std: float | None, confidence: float
) -> dict[str, Any]:
    values = metric_values(sub, metric, status)
    n = values.size
    counts = status_counts(sub)
    nan = float("nan")
    mean = float(values.mean()) if n else nan
    std = float(values.std(ddof=1)) if n > 1 else nan
    interval = mean_ci(values, confidence)
    if n == 1 and seed_std is not None:
        half = stats.norm.ppf(0.5 + confidence / 2) * seed_std
        interval = interval._replace(low=mean - half, high=mean + half, method="z")
    return {
        "n": n,
        "n_failed": len(sub) - n if status is None else sum(c for s, c in counts.items() if s != status),
        "mean": mean,
        "std": std,
        "sem": std / np.sqrt(n) if n > 1 else nan,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "ci_method": interval.method,
    }


def _with_next_tests(table: pd.DataFrame, mode: str, seed_std: float | None, alpha: float) -> pd.DataFrame:
    sign = 1.0 if mode == "max" else -1.0
    upper, lower = table.iloc[:-1], table.iloc[1:]
    pairs = list(zip(upper.itertuples(), lower.itertuples(), strict=True))
    deltas = [sign * (a.mean - b.mean) for a, b in pairs]
    p_values = [_p_between(a, b, seed_std) for a, b in pairs]
    nan = float("nan")
    table["delta_to_next"] = [*deltas, nan]
    table["p_vs_next"] = [*p_values, nan]
    flags = [pd.NA if np.isnan(p) else bool(p < alpha) for p in table["p_vs_next"]]
    table["distinguishable_from_next"] = pd.array(flags, dtype="boolean")
    return table


def _p_between(a: Any, b: Any, seed_std: float | None) -> float:
    """Two-sided p-value of the difference of two configurations' means."""
    if np.isnan(a.mean) or np.isnan(b.mean):
        return float("nan")
    if a.n > 1 and b.n > 1:
        with quiet():
            result = stats.ttest_ind_from_stats(a.mean, a.std, a.n, b.mean, b.std, b.n, equal_var=False)
        return float(result.pvalue)
    if seed_std is not None and seed_std > 0:
        se = seed_std * np.sqrt(1 / a.n + 1 / b.n)
        return float(2 * stats.norm.sf(abs(a.mean - b.mean) / se))
    return float("nan")


def variance_components(
    trials: pd.DataFrame,
    params: str | Sequence[str],
    metric: str = DEFAULT_METRIC,
    *,
    status: str | None = OK,
) -> dict[str, float]:
    """Share of the variance of ``metric`` due to the hyperparameters against the seeds.

    One-way random-effects ANOVA with the configurations (combinations of
    ``params``) as groups: ``ss_between``, ``ss_within``, ``df_between``,
    ``df_within``, ``f`` and ``p`` (the F test of "all configurations are
    equal"), ``eta_squared`` (``ss_between / ss_total``), the variance
    components ``var_within`` (= MS_within, the seed variance) and
    ``var_between`` (= (MS_between - MS_within) / n0, clipped at 0, with n0 the
    usual group size for unbalanced groups), and their shares
    ``share_between`` (the intraclass correlation) and ``share_within``.
    With one seed per configuration ``df_within`` is 0 and the within part is
    NaN: seeds and hyperparameters cannot be separated.
    """
    keys = _config_keys(trials, params, metric)
    samples = [metric_values(sub, metric, status) for _, sub in groups(trials, keys)]
    return _one_way_anova([s for s in samples if s.size])


def _one_way_anova(samples: list[np.ndarray]) -> dict[str, float]:
    sizes = np.array([s.size for s in samples], dtype=float)
    k, total = len(samples), sizes.sum()
    if k < 2:
        raise ValueError(f"variance_components needs 2 configurations with values, got {k}")
    grand = np.concatenate(samples).mean()
    ss_between = float(sum(s.size * (s.mean() - grand) ** 2 for s in samples))
    ss_within = float(sum(((s - s.mean()) ** 2).sum() for s in samples))
    df_between, df_within = k - 1, total - k
    nan = float("nan")
    with quiet():
        ms_between = ss_between / df_between
        ms_within = ss_within / df_within if df_within > 0 else nan
        f = ms_between / ms_within
        n0 = (total - (sizes**2).sum() / total) / df_between
        var_between = max(0.0, (ms_between - ms_within) / n0) if df_within > 0 else nan
        components = var_between + ms_within
        return {
            "n": int(total),
            "n_configs": k,
            "ss_between": ss_between,
            "ss_within": ss_within,
            "df_between": int(df_between),
            "df_within": int(df_within),
            "f": float(f),
            "p": float(stats.f.sf(f, df_between, df_within)) if df_within > 0 else nan,
            "eta_squared": ss_between / (ss_between + ss_within) if ss_between + ss_within > 0 else nan,
            "var_between": float(var_between),
            "var_within": float(ms_within),
            "share_between": float(var_between / components) if components > 0 else nan,
            "share_within": float(ms_within / components) if components > 0 else nan,
        }


def param_anova(
    trials: pd.DataFrame,
    params: str | Sequence[str],
    metric: str = DEFAULT_METRIC,
    *,
    status: str | None = OK,
    typ: int = 2,
) -> pd.DataFrame:
    """Which hyperparameter matters: ANOVA of ``metric`` on the params as categorical main effects.

    statsmodels OLS ``metric ~ C(p1) + C(p2) + ...`` and ``anova_lm`` (type
    ``typ`` sums of squares). One row per param plus ``Residual``: ``sum_sq``,
    ``df``, ``F``, ``PR(>F)`` and ``share`` (sum of squares over the total sum
    of squares). Params with a single level are left out.
    """
    keys = _config_keys(trials, params, metric)
    data = select_status(trials, status)[[*keys, metric]].copy()
    data[metric] = pd.to_numeric(data[metric], errors="coerce")
    data = data.dropna(subset=[metric])
    varied = [p for p in keys if data[p].astype(str).nunique() > 1]
    if not varied or len(data) <= sum(data[p].astype(str).nunique() - 1 for p in varied) + 1:
        raise ValueError(f"param_anova: too few trials ({len(data)}) or no varied param among {keys}")
    names = {f"x{i}": p for i, p in enumerate(varied)}
    frame = pd.DataFrame(
        {"y": data[metric].to_numpy(float)} | {k: data[p].astype(str).to_numpy() for k, p in names.items()}
    )
    model = smf.ols("y ~ " + " + ".join(f"C({k})" for k in names), data=frame).fit()
    with quiet():
        table = anova_lm(model, typ=typ)
    table.index = [names.get(i[2:-1], i) if i.startswith("C(") else i for i in table.index]
    total = float(((frame["y"] - frame["y"].mean()) ** 2).sum())
    table["share"] = table["sum_sq"] / total if total > 0 else float("nan")
    return table
