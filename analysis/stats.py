"""Statistics of seed studies: pure functions from tidy tables to DataFrames or dicts.

Accuracies are in percent (0-100). Unless a function is told otherwise
(``status=None``), only trials with ``status == "ok"`` count; diverged and
errored trials are reported as counts where a table has room for them.
Undefined statistics (the std of one value, a correlation of constant data)
are NaN, without warnings.

References:
    Wightman, Touvron, Jégou 2021, "ResNet strikes back" (Figures 1-3).
    Dodge et al. 2019, "Show your work" (expected maximum of k trials).
    Tang et al. 2020 (unbiased expected maximum without replacement).
    Jordan 2023, "On the variance of neural network training with respect to
    test sets and distributions" (test-set part of the seed variance).
    Bouthillier et al. 2021, "Accounting for variance in ML benchmarks" (P(A > B)).
    Agarwal et al. 2021, rliable (interquartile mean).
    Bonett & Wright 2000 (Fisher-z interval of Spearman's rho).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import integrate, special, stats
from statsmodels.stats.power import TTestIndPower
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from analysis.contract import DEFAULT_METRIC

from analysis._tables import (
    OK,
    as_list,
    check_mode,
    groups,
    metric_values,
    quiet,
    require_columns,
    require_values,
    select_status,
    status_counts,
)

__all__ = [
    "compare",
    "epoch_rank_stability",
    "epoch_variance",
    "expected_max",
    "normal_expected_max",
    "prob_greater",
    "seed_summary",
    "seed_table",
    "seeds_needed",
    "split_correlation",
    "test_set_decomposition",
    "test_set_noise",
]

CONFIDENCE = 0.95
N_RESAMPLES = 9999
SPLIT_METRICS = ("val_top1", "v2_top1")

ArrayLike = Sequence[float] | np.ndarray | pd.Series
Values = pd.DataFrame | ArrayLike

# --------------------------------------------------------------------------- normal order statistics

_GRID = np.linspace(-12.0, 12.0, 9601)


def normal_expected_max(k: int | Iterable[int]) -> float | np.ndarray:
    """Expected maximum ``e_k`` of ``k`` independent standard normal draws.

    ``e_k = integral of x * k * phi(x) * Phi(x)^(k-1) dx``, integrated numerically
    (Simpson's rule on a fine grid, in log space). The expected range of ``k``
    draws is ``2 * e_k``; the expected maximum of ``k`` draws from N(mu, sigma)
    is ``mu + e_k * sigma``.
    """
    ks = np.atleast_1d(np.asarray(k))
    if ks.size == 0 or np.any(ks < 1) or not np.all(np.equal(np.mod(ks, 1), 0)):
        raise ValueError(f"k must be positive integers, got {k!r}")
    ks = ks.astype(float)
    log_phi = stats.norm.logpdf(_GRID)
    log_cdf = special.log_ndtr(_GRID)
    out = np.empty(ks.shape)
    for start in range(0, ks.size, 256):  # bounded memory for large k ranges
        chunk = ks[start : start + 256, None]
        density = np.exp(np.log(chunk) + log_phi + (chunk - 1) * log_cdf)
        out[start : start + 256] = integrate.simpson(_GRID * density, x=_GRID, axis=-1)
    return float(out[0]) if np.ndim(k) == 0 else out


# --------------------------------------------------------------------------- seed summary (Figure 1)


def seed_summary(
    trials: pd.DataFrame,
    metric: str = DEFAULT_METRIC,
    by: str | Sequence[str] | None = None,
    *,
    status: str | None = OK,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Distribution of ``metric`` over seeds, one row per group of ``by``.

    Only trials with ``status`` count (``None``: all rows with a finite value);
    ``n_diverged`` and ``n_error`` count the other trials of the group.

    Columns: the ``by`` columns, ``metric``, ``n``, ``n_diverged``, ``n_error``,
    ``mean``, ``std`` (sample, ddof 1), ``sem``, ``median``, ``iqm``
    (interquartile mean: mean of the middle 50 %, rliable), ``min``, ``max``,
    ``range``, ``q05``, ``q95``, ``mean_ci_low``/``mean_ci_high`` and
    ``mean_ci_method`` (the interval of the mean and how it was made, ``"t"``:
    the Student t-interval at every n, see :func:`mean_ci`; NaN and ``None``
    below 2 values), ``std_ci_low``/``std_ci_high`` (chi-square
    interval, exact for normal data), ``range_in_std`` (observed range / std) and
    ``expected_range_in_std`` (expected range of ``n`` standard normal draws,
    ``2 e_n``): a range well above it hints at outlier seeds.
    This is Figure 1 of "ResNet strikes back".
    """
    require_columns(trials, [metric, *as_list(by)], "trials")
    if trials.empty:
        raise ValueError("trials is empty")
    rows = []
    for key, sub in groups(trials, as_list(by)):
        counts = status_counts(sub)
        values = metric_values(sub, metric, status)
        rows.append(
            {
                **key,
                "metric": metric,
                "n": values.size,
                "n_diverged": counts["diverged"],
                "n_error": counts["error"],
                **_describe(values, confidence),
            }
        )
    return pd.DataFrame(rows)


def seed_table(
    trials: pd.DataFrame,
    metrics: Sequence[str] = SPLIT_METRICS,
    by: str | Sequence[str] | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`seed_summary` of several metrics stacked (default ImageNet-val and -V2 top-1).

    One row per metric (and group of ``by``); ``.set_index("metric").T`` gives
    the paper's Figure 1 layout (statistics down, test sets across).
    """
    return pd.concat([seed_summary(trials, m, by, **kwargs) for m in metrics], ignore_index=True)


def _describe(values: np.ndarray, confidence: float) -> dict[str, Any]:
    n = values.size
    nan = float("nan")
    if n == 0:
        names = ["mean", "std", "sem", "median", "iqm", "min", "max", "range", "q05", "q95"]
        names += ["range_in_std", "expected_range_in_std"]
        return {name: nan for name in names} | _intervals(values, confidence)
    with quiet():
        std = float(np.std(values, ddof=1)) if n > 1 else nan
        value_range = float(np.ptp(values))
        out = {
            "mean": float(np.mean(values)),
            "std": std,
            "sem": std / np.sqrt(n),
            "median": float(np.median(values)),
            "iqm": float(stats.trim_mean(values, 0.25)),
            "min": float(np.min(values)),
            "max": float(np.max(values)),
            "range": value_range,
            "q05": float(np.quantile(values, 0.05)),
            "q95": float(np.quantile(values, 0.95)),
        }
    out |= _intervals(values, confidence)
    out["range_in_std"] = value_range / std if std > 0 else nan
    out["expected_range_in_std"] = 2 * normal_expected_max(n)
    return out


def _intervals(values: np.ndarray, confidence: float) -> dict[str, Any]:
    mean = mean_ci(values, confidence)
    std_low, std_high = std_ci(values, confidence)
    return {
        "mean_ci_low": mean.low,
        "mean_ci_high": mean.high,
        "mean_ci_method": mean.method,
        "std_ci_low": std_low,
        "std_ci_high": std_high,
    }


class MeanInterval(NamedTuple):
    """An interval of a mean: its bounds and the method that made them (``None``: no interval)."""

    low: Any  # float, or an array for rows of values
    high: Any
    method: str | None


def mean_ci(values: ArrayLike, confidence: float = CONFIDENCE) -> MeanInterval:
    """Interval of the mean over seeds: the Student t-interval, at every n.

    ``mean +- t_{(1 + confidence) / 2, n - 1} * s / sqrt(n)`` (``s``: the sample std,
    ddof 1); ``method`` is ``"t"``. NaN bounds (method ``None``) below 2 values; a
    point for constant data. ``values`` of shape ``(..., n)`` give one interval per row
    (arrays of bounds), a 1-D sample gives floats. This is the one place that makes the
    interval of a mean: the seed table, the grid ranking and the compare figure call it.

    Why not the BCa bootstrap (what the seed table used before), at any n: a bootstrap
    of n values knows only those n values, so its interval is narrower than the
    t-interval by about ``sqrt((n - 1) / n) * z / t`` (median ratio measured: 0.35 at
    n = 3, 0.53 at n = 4, 0.83 at n = 10, 0.94 at n = 30) and cannot cover. ``benchmarks/mean_interval_coverage.py`` measured the coverage of
    the 95 % intervals at n = 3, 4, 5, 8, 10, 15, 20, 30, 50, 100, 200 (BCa: 9,999
    resamples, 4,000 studies per cell, Monte Carlo error about 0.0035; t: 100,000
    studies, 0.0007):

    - normal outcomes: BCa 0.720, 0.796, 0.844, 0.879, 0.905, 0.920, 0.926, 0.939,
      0.938, 0.950, 0.948; t 0.950, 0.950, 0.951, 0.950, 0.950, 0.951, 0.949, 0.951,
      0.950, 0.950, 0.950 (exact);
    - 100 - Gamma(16, 0.25) (mean 96, sd 1, skewness -0.5): BCa 0.728, 0.812, 0.830,
      0.886, 0.895, 0.921, 0.919, 0.936, 0.941, 0.946, 0.949; t 0.948, 0.946, 0.944,
      0.945, 0.947, 0.947, 0.947, 0.948, 0.949, 0.950, 0.950;
    - Beta near a ceiling (mean 97.5, sd 1, skewness -0.78): BCa 0.703, 0.794, 0.832,
      0.881, 0.892, 0.915, 0.924, 0.937, 0.941, 0.945, 0.945; t 0.940, 0.940, 0.938,
      0.941, 0.942, 0.943, 0.944, 0.947, 0.947, 0.949, 0.950;
    - Beta (mean 97.9, sd 1.4, skewness -1.35): BCa 0.694, 0.778, 0.826, 0.869, 0.881,
      0.907, 0.916, 0.930, 0.933, 0.941, 0.938; t 0.919, 0.916, 0.919, 0.922, 0.924,
      0.931, 0.934, 0.937, 0.942, 0.947, 0.948.

    BCa covered less than the t-interval in every cell: by 0.23 at n = 3, by about 0.01
    at n = 30-50 and by 0 to 0.01 at n = 100-200. There is
    no n from which switching to BCa buys coverage, so there is no threshold: the
    t-interval at every n, which is also exact for normal seeds and draws no random
    numbers. BCa splits its misses a little more evenly between the two sides on skewed
    outcomes (skewness -0.78, n = 200: t misses 2.1 % of the time below the mean and
    3.0 % above, BCa 2.6 % and 2.9 %); the interval here is two-sided. Strong skewness
    costs the t-interval coverage at small n (0.938-0.940 at skewness -0.78 and
    0.916-0.924 at -1.35 for n = 3 ... 10): read an interval of a few seeds near a
    ceiling as about 94 % or less.
    """
    x = np.asarray(values, dtype=float)
    n = x.shape[-1]
    nan = np.full(x.shape[:-1], np.nan)
    if n < 2:
        return MeanInterval(*_scalar_or_array(nan, nan), None)
    mean = np.mean(x, axis=-1)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * np.std(x, axis=-1, ddof=1) / np.sqrt(n)
    constant = np.all(x == x[..., :1], axis=-1)  # a point, free of the rounding in mean and std
    low = np.where(constant, x[..., 0], mean - half)
    high = np.where(constant, x[..., 0], mean + half)
    return MeanInterval(*_scalar_or_array(low, high), "t")


def _scalar_or_array(*arrays: np.ndarray) -> list[Any]:
    return [float(a) if a.ndim == 0 else a for a in arrays]


def std_ci(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Chi-square interval of the standard deviation.

    ``[sqrt((n-1) s^2 / chi2_{1-a/2, n-1}), sqrt((n-1) s^2 / chi2_{a/2, n-1})]``,
    exact for normal data; NaN below 2 values.
    """
    n = values.size
    if n < 2:
        return float("nan"), float("nan")
    scaled = (n - 1) * np.var(values, ddof=1)
    alpha = 1 - confidence
    upper_q, lower_q = stats.chi2.ppf([1 - alpha / 2, alpha / 2], n - 1)
    return float(np.sqrt(scaled / upper_q)), float(np.sqrt(scaled / lower_q))


def _bootstrap(
    data: tuple[np.ndarray, ...],
    statistic: Callable[..., Any],
    confidence: float,
    n_resamples: int,
    rng: np.random.Generator | int | None,
    method: str,
) -> tuple[float, float]:
    with quiet():
        result = stats.bootstrap(
            data,
            statistic,
            vectorized=True,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method=method,
            random_state=np.random.default_rng(rng),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


# --------------------------------------------------------------------------- along the epochs (Figure 3)


def epoch_variance(epochs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """Spread of ``metric`` over the trials at each epoch (Figure 3 of the paper).

    One row per epoch: ``epoch``, ``n``, ``mean``, ``std`` (ddof 1), ``min``,
    ``max``, ``q05``, ``q95``. Rows with a missing value are left out. Pass the
    epochs of the trials you want (e.g. ``StudyTables.select().epochs``).
    """
    table = _epoch_table(epochs, metric)
    grouped = table.groupby("epoch")[metric]
    out = grouped.agg(["count", "mean", "std", "min", "max"]).rename(columns={"count": "n"})
    out["q05"] = grouped.quantile(0.05)
    out["q95"] = grouped.quantile(0.95)
    return out.reset_index()


def epoch_rank_stability(epochs: pd.DataFrame, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """How early the seeds' final ranking shows: rank correlation of each epoch with the last.

    For each epoch: ``n`` (trials present at that epoch and at their last
    epoch), ``spearman`` and ``kendall`` (tau-b) between the trials' ``metric``
    at that epoch and at each trial's own last epoch. NaN with fewer than 3
    trials or constant values.
    """
    table = _epoch_table(epochs, metric)
    keys = [c for c in ("study", "trial_id") if c in table.columns]
    wide = table.pivot_table(index=keys, columns="epoch", values=metric, aggfunc="last")
    final = table.sort_values("epoch").groupby(keys)[metric].last().reindex(wide.index)
    rows = []
    for epoch in wide.columns:
        present = wide[epoch].notna()
        x, y = wide.loc[present, epoch].to_numpy(), final[present].to_numpy()
        rows.append({"epoch": epoch, "n": int(present.sum()), **_rank_correlations(x, y)})
    return pd.DataFrame(rows)


def _epoch_table(epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    require_columns(epochs, ["trial_id", "epoch", metric], "epochs")
    table = epochs.dropna(subset=[metric])
    if table.empty:
        raise ValueError(f"epochs has no value of {metric!r}")
    return table


def _rank_correlations(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if x.size < 3:
        return {"spearman": float("nan"), "kendall": float("nan")}
    with quiet():
        return {
            "spearman": float(stats.spearmanr(x, y).statistic),
            "kendall": float(stats.kendalltau(x, y).statistic),
        }


# --------------------------------------------------------------------------- expected maximum


def expected_max(
    values: Values,
    k: int | Iterable[int] | None = None,
    method: str = "unbiased",
    *,
    metric: str = DEFAULT_METRIC,
    mode: str = "max",
    status: str | None = OK,
) -> pd.DataFrame:
    """Expected best of ``k`` trials drawn from the observed ones (Dodge et al. 2019).

    With the values sorted ascending, ``v_(1) <= ... <= v_(n)``:

    - ``"unbiased"`` (without replacement, Tang et al. 2020):
      ``E[max_k] = sum_j v_(j) C(j-1, k-1) / C(n, k)``, ``k <= n``; the weights
      are computed in log space, so n in the thousands is fine.
    - ``"dodge"`` (with replacement, Dodge et al. 2019):
      ``E[max_k] = sum_i v_(i) [(i/n)^k - ((i-1)/n)^k]``; any ``k``.

    Args:
        values: the scores, or a trials table whose ``metric`` column is used
            (rows with ``status`` only).
        k: ``None`` for 1..n, an int, or several ints.
        mode: ``"min"`` to get the expected minimum (e.g. for a loss).

    Returns columns ``k``, ``expected_max`` (the expected best of k),
    ``inflation`` (``expected_max - mean``: what reporting the best of k adds
    to the typical run) and ``normal`` (``mean + e_k * std``, the expectation
    if the scores were normal).
    """
    sign = 1.0 if check_mode(mode) == "max" else -1.0
    scores = np.sort(sign * require_values(metric_values(values, metric, status), "expected_max"))
    n = scores.size
    ks = np.arange(1, n + 1) if k is None else np.atleast_1d(np.asarray(k, dtype=int))
    weights = {"unbiased": _unbiased_weights, "dodge": _dodge_weights}
    if method not in weights:
        raise ValueError(f"method must be one of {sorted(weights)}, got {method!r}")
    if np.any(ks < 1) or (method == "unbiased" and np.any(ks > n)):
        raise ValueError(f"k must lie in 1..{n} for method {method!r}, got {k!r}")
    w = weights[method](n, ks)
    centre = float(np.mean(scores))
    # weights normalised and applied to centred scores: k = 1 gives the mean to the last bit
    best = sign * (centre + (w / w.sum(axis=1, keepdims=True)) @ (scores - centre))
    mean = sign * centre
    std = float(np.std(scores, ddof=1)) if n > 1 else float("nan")
    return pd.DataFrame(
        {
            "k": ks,
            "expected_max": best,
            "inflation": best - mean,
            "normal": mean + sign * normal_expected_max(ks) * std,
        }
    )


def _unbiased_weights(n: int, ks: np.ndarray) -> np.ndarray:
    """``W[k, j] = C(j-1, k-1) / C(n, k)`` for ``j >= k``, else 0 (rows sum to 1)."""
    j = np.arange(1, n + 1)[None, :]
    kk = ks[:, None].astype(float)
    valid = j >= kk
    with np.errstate(invalid="ignore"):
        log_w = _log_comb(j - 1, kk - 1) - _log_comb(n, kk)
    return np.where(valid, np.exp(np.where(valid, log_w, 0.0)), 0.0)


def _dodge_weights(n: int, ks: np.ndarray) -> np.ndarray:
    """``W[k, i] = (i/n)^k - ((i-1)/n)^k``: P(the max of k draws with replacement is v_(i))."""
    i = np.arange(1, n + 1)[None, :]
    kk = ks[:, None].astype(float)
    return (i / n) ** kk - ((i - 1) / n) ** kk


def _log_comb(a: np.ndarray | int, b: np.ndarray) -> np.ndarray:
    return special.gammaln(a + 1) - special.gammaln(b + 1) - special.gammaln(a - b + 1)


# --------------------------------------------------------------------------- val against V2


def split_correlation(
    trials: pd.DataFrame,
    x: str = DEFAULT_METRIC,
    y: str = "v2_top1",
    *,
    status: str | None = OK,
    confidence: float = CONFIDENCE,
) -> dict[str, float]:
    """Correlation over seeds between two metrics (by default ImageNet-val and -V2 top-1).

    Does a seed that is lucky on val stay lucky on V2? Returns ``n``,
    ``pearson`` with a Fisher-z interval (``pearson_ci_low``/``_high``),
    ``pearson_p``, ``spearman`` with a Fisher-z interval using the Bonett-Wright
    (2000) standard error ``sqrt((1 + r^2/2) / (n - 3))``, ``spearman_p``.
    Correlations need 3 pairs and intervals 4; below that they are NaN.
    """
    require_columns(trials, [x, y], "trials")
    pairs = select_status(trials, status)[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    a, b = pairs[x].to_numpy(float), pairs[y].to_numpy(float)
    n = a.size
    nan = float("nan")
    out: dict[str, float] = {"n": n}
    tests = {"pearson": stats.pearsonr, "spearman": stats.spearmanr}
    for name, test in tests.items():
        r, p = nan, nan
        if n >= 3:
            with quiet():
                result = test(a, b)
            r, p = float(result.statistic), float(result.pvalue)
        se = np.sqrt((1 + r**2 / 2 if name == "spearman" else 1.0) / (n - 3)) if n > 3 else nan
        low, high = _fisher_interval(r, se, confidence)
        out |= {name: r, f"{name}_ci_low": low, f"{name}_ci_high": high, f"{name}_p": p}
    return out


def _fisher_interval(r: float, se: float, confidence: float) -> tuple[float, float]:
    z = stats.norm.ppf(0.5 + confidence / 2)
    with quiet():
        centre = np.arctanh(r)
        return float(np.tanh(centre - z * se)), float(np.tanh(centre + z * se))


# --------------------------------------------------------------------------- test-set noise


def test_set_noise(
    trials: pd.DataFrame,
    metric: str = DEFAULT_METRIC,
    predictions: pd.DataFrame | np.ndarray | None = None,
    *,
    status: str | None = OK,
) -> dict[str, Any]:
    """How much of the seed-to-seed spread the finite test set alone explains.

    Always: ``n_trials``, ``n_examples`` (from the ``n_<split>`` column),
    ``mean``, ``observed_std`` (ddof 1) and ``binomial_std`` =
    ``100 sqrt(p (1 - p) / n_examples)``, the std of the accuracy of a model
    with accuracy ``p`` re-drawn on a fresh test set of that size, and their
    ratio ``observed_over_binomial``.

    With ``predictions`` (a trials x examples 0/1 correctness matrix of the
    same split, e.g. ``StudyTables.predictions("val")``), Jordan (2023)'s split of the
    observed variance of the accuracy over the rows (``observed_var``, percent^2):
    ``test_set_var = 100^2 (1/n^2) sum_i p_i (1 - p_i) * m / (m - 1)`` (``p_i``:
    the share of the ``m`` runs that get example ``i`` right; the ``m / (m-1)``
    factor puts it on the same ddof-1 footing as ``observed_var``, so that the
    parts add up), ``distribution_var = observed_var - test_set_var`` (the
    variance that would remain on an infinite test set; it can come out
    slightly negative from noise), both as std (``test_set_std``,
    ``distribution_std``, the latter clipped at 0) and as shares of
    ``observed_var`` (``test_set_share``, ``distribution_share``).
    The binomial std bounds the test-set std from above.
    """
    size_column = split_size_column(metric)
    require_columns(trials, [metric, size_column], "trials")
    values = metric_values(trials, metric, status)
    n_examples = _split_size(select_status(trials, status)[size_column], size_column)
    nan = float("nan")
    with quiet():
        mean = float(np.mean(values)) if values.size else nan
        observed = float(np.std(values, ddof=1)) if values.size > 1 else nan
        p = mean / 100
        binomial = 100 * float(np.sqrt(p * (1 - p) / n_examples))
    out: dict[str, Any] = {
        "metric": metric,
        "n_trials": values.size,
        "n_examples": n_examples,
        "mean": mean,
        "observed_std": observed,
        "binomial_std": binomial,
        "observed_over_binomial": observed / binomial if binomial > 0 else nan,
    }
    if predictions is not None:
        out |= test_set_decomposition(predictions)
    return out


test_set_noise.__test__ = False  # not a pytest test despite the name


def split_of(metric: str) -> str:
    """The evaluation split of a metric column: ``"v2_top1"`` -> ``"v2"``."""
    return metric.split("_", 1)[0]


def split_size_column(metric: str) -> str:
    """The column holding the evaluation split size of ``metric``: ``"val_top1"`` -> ``"n_val"``."""
    return f"n_{split_of(metric)}"


def _split_size(sizes: pd.Series, column: str) -> float:
    distinct = pd.unique(sizes.dropna())
    if len(distinct) > 1:
        raise ValueError(f"{column} differs between trials ({sorted(distinct)}); one split size expected")
    return float(distinct[0]) if len(distinct) else float("nan")


def test_set_decomposition(predictions: pd.DataFrame | np.ndarray) -> dict[str, float]:
    """Jordan (2023)'s split of the variance of accuracy over runs (see :func:`test_set_noise`).

    ``predictions``: runs x examples, 1/True where the run got the example right.
    """
    correct = np.asarray(predictions, dtype=float)
    if correct.ndim != 2 or correct.shape[1] == 0:
        raise ValueError(f"predictions must be a runs x examples matrix, got shape {correct.shape}")
    m, n = correct.shape
    nan = float("nan")
    if m < 2:
        observed = test_set = nan
    else:
        observed = 100**2 * float(np.var(correct.mean(axis=1), ddof=1))
        p = correct.mean(axis=0)
        test_set = 100**2 * float(np.sum(p * (1 - p))) / n**2 * m / (m - 1)
    distribution = observed - test_set
    with quiet():
        return {
            "predictions_n_trials": m,
            "observed_var": observed,
            "test_set_var": test_set,
            "distribution_var": distribution,
            "test_set_std": float(np.sqrt(test_set)),
            "distribution_std": float(np.sqrt(np.maximum(distribution, 0.0))),  # NaN stays NaN
            "test_set_share": test_set / observed if observed > 0 else nan,
            "distribution_share": distribution / observed if observed > 0 else nan,
        }


test_set_decomposition.__test__ = False


# --------------------------------------------------------------------------- comparing two recipes


def prob_greater(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """P(A > B): the share of pairs (a_i, b_j) with a_i > b_j, ties counting half.

    Computed from the ranks of the pooled sample (the Mann-Whitney U over
    ``n_a * n_b``), vectorised along leading axes for the bootstrap.
    """
    a = np.moveaxis(np.asarray(a, dtype=float), axis, -1)
    b = np.moveaxis(np.asarray(b, dtype=float), axis, -1)
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    a = np.broadcast_to(a, (*shape, a.shape[-1]))
    b = np.broadcast_to(b, (*shape, b.shape[-1]))
    n_a, n_b = a.shape[-1], b.shape[-1]
    ranks = stats.rankdata(np.concatenate([a, b], axis=-1), axis=-1)
    u = ranks[..., :n_a].sum(axis=-1) - n_a * (n_a + 1) / 2
    result = u / (n_a * n_b)
    return float(result) if result.ndim == 0 else result


def compare(
    a: Values,
    b: Values,
    metric: str = DEFAULT_METRIC,
    *,
    status: str | None = OK,
    confidence: float = CONFIDENCE,
    alpha: float = 0.05,
    power: float = 0.8,
    n_resamples: int = N_RESAMPLES,
    random_state: int = 0,
) -> dict[str, float]:
    """Compare recipe A against recipe B over their seeds.

    ``a`` and ``b`` are trials tables (their ``metric`` column, ``status`` rows)
    or the values themselves. Returns:

    - ``n_a``, ``n_b``, ``mean_a``, ``mean_b``, ``std_a``, ``std_b``;
    - ``delta`` = mean A - mean B with a Welch t interval
      (``delta_ci_low``/``_high``) and its p-value ``p_welch``;
    - ``hedges_g``: the standardised difference (pooled std) with the exact
      small-sample correction;
    - ``p_mannwhitney`` (two-sided Mann-Whitney U) and ``p_permutation``
      (two-sided permutation test of the difference of means);
    - ``p_a_gt_b``: P(A > B) over all pairs, ties counting half, with a
      percentile bootstrap interval resampling each arm (Bouthillier et al.
      2021; rliable's probability of improvement);
    - ``seeds_needed``: seeds per arm for a two-sided t-test at ``alpha`` to
      detect the observed standardised difference with ``power``
      (statsmodels ``TTestIndPower``; about 15.7 (sigma / delta)^2).

    Everything random is seeded by ``random_state``; statistics that need 2
    values per arm are NaN below that.
    """
    x = require_values(metric_values(a, metric, status, "a"), "compare: a")
    y = require_values(metric_values(b, metric, status, "b"), "compare: b")
    nan = float("nan")
    out: dict[str, float] = {
        "n_a": x.size,
        "n_b": y.size,
        "mean_a": float(np.mean(x)),
        "mean_b": float(np.mean(y)),
        "delta": float(np.mean(x) - np.mean(y)),
        "p_a_gt_b": prob_greater(x, y),
    }
    with quiet():
        out["std_a"] = float(np.std(x, ddof=1)) if x.size > 1 else nan
        out["std_b"] = float(np.std(y, ddof=1)) if y.size > 1 else nan
        out["p_mannwhitney"] = float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)
    out |= _welch(x, y, confidence)
    out |= _effect_size(x, y, alpha, power)
    out |= _resampling_tests(x, y, confidence, n_resamples, random_state)
    return out


def _welch(x: np.ndarray, y: np.ndarray, confidence: float) -> dict[str, float]:
    if min(x.size, y.size) < 2:
        return {"delta_ci_low": float("nan"), "delta_ci_high": float("nan"), "p_welch": float("nan")}
    with quiet():
        result = stats.ttest_ind(x, y, equal_var=False)
        ci = result.confidence_interval(confidence)
    return {"delta_ci_low": float(ci.low), "delta_ci_high": float(ci.high), "p_welch": float(result.pvalue)}


def pooled_std(x: np.ndarray, y: np.ndarray) -> float:
    """Pooled standard deviation of two samples (NaN when it has no degree of freedom)."""
    dof = x.size + y.size - 2
    if dof < 1:
        return float("nan")
    ss = np.sum((x - x.mean()) ** 2) + np.sum((y - y.mean()) ** 2)
    return float(np.sqrt(ss / dof))


def _effect_size(x: np.ndarray, y: np.ndarray, alpha: float, power: float) -> dict[str, float]:
    dof = x.size + y.size - 2
    with quiet():
        d = (np.mean(x) - np.mean(y)) / pooled_std(x, y)
        # exact small-sample correction J = Gamma(dof/2) / (sqrt(dof/2) Gamma((dof-1)/2))
        log_j = special.gammaln(dof / 2) - 0.5 * np.log(dof / 2) - special.gammaln((dof - 1) / 2)
        hedges = float(d * np.exp(log_j)) if dof > 1 else float("nan")
    return {"hedges_g": hedges, "seeds_needed": seeds_needed(float(d), alpha, power)}


def seeds_needed(effect_size: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Seeds per arm for a two-sided two-sample t-test to detect ``effect_size`` (delta / sigma).

    ``inf`` for no difference, NaN when undefined, and 2 (the least a t-test takes) for a
    difference so large that 2 seeds per arm already have the power: statsmodels' solver has
    no root above 2 there and would warn (``ConvergenceWarning``) and return NaN. The power at
    2 seeds is NaN for very large differences (its noncentral t overflows): counted as enough.
    """
    if not np.isfinite(effect_size):
        return float("nan")
    if effect_size == 0:
        return float("inf")
    solver = TTestIndPower()
    args = dict(effect_size=abs(effect_size), alpha=alpha, ratio=1.0, alternative="two-sided")
    with quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if not solver.power(nobs1=2, **args) < power:
            return 2.0
        try:
            n = float(np.squeeze(solver.solve_power(power=power, **args)))
        except (ValueError, RuntimeError):
            return float("nan")
    return n


def _resampling_tests(
    x: np.ndarray, y: np.ndarray, confidence: float, n_resamples: int, random_state: int
) -> dict[str, float]:
    nan = float("nan")
    if min(x.size, y.size) < 2:
        return {"p_permutation": nan, "p_a_gt_b_ci_low": nan, "p_a_gt_b_ci_high": nan}
    low, high = _bootstrap((x, y), prob_greater, confidence, n_resamples, random_state, method="percentile")
    with quiet():
        permutation = stats.permutation_test(
            (x, y),
            _mean_difference,
            vectorized=True,
            n_resamples=n_resamples,
            alternative="two-sided",
            random_state=np.random.default_rng(random_state),
        )
    return {"p_permutation": float(permutation.pvalue), "p_a_gt_b_ci_low": low, "p_a_gt_b_ci_high": high}


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)
