"""Sequential seed studies: confidence sequences that stay valid when looked at after every seed.

A t-interval recomputed after each new seed, and the study stopped as soon as it
is narrow enough, covers the mean less often than its nominal level: every look
is another chance to stop on a lucky stretch. A *confidence sequence* (CS) is a
sequence of intervals ``C_1, C_2, ...`` with ``P(mean in C_n for every n) >= level``,
so any data-dependent stopping rule keeps the level.

Two methods (``METHODS``):

- ``"t_mixture"`` (the default): the anytime-valid t-test of Wang & Ramdas
  (2024, "Anytime-valid t-tests and confidence sequences for Gaussian means
  with unknown variance", arXiv:2310.03722), which takes Lai's (1976, "On
  confidence sequences", Ann. Statist.) construction (a right-Haar mixture
  ``1/sigma`` over the scale) with a Gaussian instead of a flat mixture over
  the mean. For ``H0: mean = m``, the Bayes factor of the scale-invariant data
  with a ``N(0, c^2)`` prior on the standardised effect ``(mean - m) / sigma``
  is a test martingale in that reduced filtration, so by Ville's inequality
  ``{m : BF_n(m) < 1 / alpha}`` is a CS. The Bayes factor has the closed form
  ``(1 + n c^2)^(-1/2) [(1 + t^2/nu) / (1 + t^2/(nu (1 + n c^2)))]^(n/2)`` of
  the t-statistic ``t`` with ``nu = n - 1`` (the one-sample form of Gönen,
  Johnson, Lu, Westfall 2005, "The Bayesian two-sample t test"), so the CS is
  ``mean_n +- sqrt(u_n * SS_n / n)`` with ``SS_n`` the sum of squared
  deviations, ``r = 1 + n c^2``, ``K = (r / alpha^2)^(1/n)`` and
  ``u_n = (K - 1) / (1 - K / r)`` (infinite while ``K >= r``). Exact for
  normal outcomes with any unknown sigma; seed outcomes of a fixed recipe are
  close to normal, and in simulation it keeps the level on skewed accuracies
  near a ceiling too (``benchmarks/sequential_sim.py``). Its width shrinks
  like ``sigma sqrt(log n / n)``: at sigma = 1 it reaches a half-width of
  0.25 point after about 124 seeds on average, twice what a t-interval fixed
  in advance needs.
- ``"betting"``: the hedged-capital betting CS of Waudby-Smith & Ramdas (2023,
  "Estimating means of bounded random variables by betting", JRSS B),
  with their predictable plug-in bets (the ``hedged_cs`` defaults of their
  ``confseq`` package, version 0.0.11: theta = 1/2,
  truncation c = 1/2, prior mean 1/2 and variance 1/4, one fake
  observation) and the running intersection. Valid for *every* distribution on
  the known ``bounds``, with no normality. The price is its second-order term,
  which scales with the width of the bounds: with accuracies on [0, 100] it
  needs at least 1,471 seeds for a half-width of 0.25 even when every seed
  gives the same accuracy (:func:`min_seeds`; ``benchmarks/sequential_sim.py``).
  Every CS that uses only the range pays such a term; the predictable-plug-in
  empirical-Bernstein CS of the same paper (PrPl-EB, akin to Howard et al.
  2021's empirical-Bernstein boundaries) needs about 3,000 there, so it is not
  offered. Give tighter bounds only when they are known before the study (a
  pre-committed range), never from the data.

Every interval is intersected with ``bounds``, and the running intersection
is taken (``C_n`` is the intersection of ``C_1 .. C_n``), which keeps the
guarantee and makes the path monotone. Values are taken in seed order; the
result is a deterministic function of them, so a resumed study recomputes the
same path.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis._tables import quiet
from analysis.stats import seeds_needed

__all__ = [
    "confidence_bounds",
    "confidence_sequence",
    "fixed_t_interval_path",
    "t_interval_bounds",
    "min_seeds",
    "method_record",
    "paired_decision",
    "expected_stopping_n",
    "seeds_needed_table",
]

DEFAULT_METHOD = "t_mixture"
DEFAULT_LEVEL = 0.95
ACCURACY_BOUNDS = (0.0, 100.0)
PRIOR_SCALE = 0.25
"""``c`` of the t-mixture: the prior std of the standardised effect. Smaller values are
tighter at large n and looser at small n. 0.25-0.35 give the fewest seeds to a
half-width of 0.25-0.3 sigma (within 2 %), and 0.25 keeps the level best on skewed
outcomes, whose misses come at the first n where the interval is finite (measured
while choosing it: 4,000 studies of 100 seeds, Beta outcomes with skewness -1.35
cover 96.9 % at 0.25 and 93.8 % at 0.5)."""

# the betting CS's bets (Waudby-Smith & Ramdas 2023; confseq 0.0.11's hedged_cs defaults)
THETA = 0.5
TRUNCATION = 0.5
PRIOR_MEAN = 0.5
PRIOR_VARIANCE = 0.25
FAKE_OBS = 1
_BISECTION_STEPS = 40  # 2^-40 of the range: far below any half-width of interest
_CHUNK_CELLS = 4_000_000  # bound on (studies x n x n) cells held at once by the betting CS

# --------------------------------------------------------------------------- the methods


def _running_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n``, the running mean and the running sum of squared deviations along the last axis.

    The squares are taken about the final mean (values near 96 +- 1 would lose
    digits in ``sum x^2 - n mean^2``) and shifted to each running mean.
    """
    n = np.arange(1, x.shape[-1] + 1, dtype=float)
    mean = np.cumsum(x, axis=-1) / n
    shift = mean[..., -1:]
    ss = np.cumsum((x - shift) ** 2, axis=-1) - n * (mean - shift) ** 2
    return n, mean, np.maximum(ss, 0.0)


def _t_mixture_bounds(x: np.ndarray, level: float, prior_scale: float = PRIOR_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Raw (not yet intersected) Lai t-mixture CS for each row of ``x`` (studies x n)."""
    n, mean, ss = _running_moments(x)
    alpha = 1 - level
    r = 1 + n * prior_scale**2
    log_k = (np.log(r) - 2 * np.log(alpha)) / n
    k = np.exp(log_k)
    finite = (np.log(r) > log_k) & (n >= 2)  # K < r, and SS needs two values
    with quiet():
        u = np.where(finite, (k - 1) / (1 - k / r), np.inf)
        half = np.where(finite, np.sqrt(u * ss / n), np.inf)
    return mean - half, mean + half


def _plugin_bets(z: np.ndarray, level: float) -> np.ndarray:
    """Predictable plug-in bets lambda_t (Waudby-Smith & Ramdas 2023) on [0, 1] data.

    ``lambda_t = sqrt(2 log(2/alpha) / (sigma2_{t-1} t log(1 + t)))`` with the
    regularised running mean and variance (one fake observation at 1/2, 1/4).
    """
    t = np.arange(1, z.shape[-1] + 1, dtype=float)
    mu_hat = np.minimum((FAKE_OBS * PRIOR_MEAN + np.cumsum(z, axis=-1)) / (t + FAKE_OBS), 1.0)
    sigma2 = (FAKE_OBS * PRIOR_VARIANCE + np.cumsum((z - mu_hat) ** 2, axis=-1)) / (t + FAKE_OBS)
    sigma2_prev = np.concatenate([np.full(z.shape[:-1] + (1,), PRIOR_VARIANCE), sigma2[..., :-1]], axis=-1)
    alpha_side = (1 - level) * THETA  # each side spends alpha/2
    with quiet():
        lam = np.sqrt(2 * np.log(1 / alpha_side) / (t * np.log1p(t) * sigma2_prev))
    return np.where(np.isfinite(lam), lam, 0.0)


def _log_capital(z: np.ndarray, lam: np.ndarray, m: np.ndarray, sign: int, t0: int = 0) -> np.ndarray:
    """log K_t(m_t) for the times t0 .. t0+T-1: the positive (sign=+1) or negative capital.

    ``z``, ``lam``: (S, t0 + T), the data and bets up to the last of those times;
    ``m``: (S, T), one candidate per study and time. Returns (S, T).
    """
    mi = m[:, :, None]  # (S, t, 1)
    cap = TRUNCATION / (mi if sign > 0 else 1 - mi)
    with np.errstate(divide="ignore", invalid="ignore"):
        bet = np.minimum(lam[:, None, :], cap)  # (S, t, i)
        step = np.log1p(sign * bet * (z[:, None, :] - mi))
    times = np.arange(t0, t0 + m.shape[1])[:, None]
    mask = (np.arange(z.shape[1])[None, :] <= times)[None]  # i <= t
    return np.where(mask, step, 0.0).sum(axis=-1)


def _betting_bounds(z: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw hedged-capital CS on [0, 1] data, by bisection on each side for every t.

    The positive capital K+_t(m) decreases in m and the negative K-_t(m) increases
    (the bets do not depend on m except through the truncation, which keeps the
    monotonicity), so the CS ``{m: max(K+/2, K-/2) < 1/alpha}`` is the interval
    between the root of K+ = 2/alpha and the root of K- = 2/alpha. Worked in
    blocks of studies and times of at most ``_CHUNK_CELLS`` (studies x times x
    observations) cells.
    """
    studies, n = z.shape
    lower, upper = np.empty_like(z), np.empty_like(z)
    lam = _plugin_bets(z, level)
    threshold = math.log(1 / ((1 - level) * THETA))
    rows = max(1, _CHUNK_CELLS // max(1, n * n))
    for start in range(0, studies, rows):
        block = slice(start, start + rows)
        width = max(1, _CHUNK_CELLS // max(1, (block.stop - start) * n))
        for t0 in range(0, n, width):
            t1 = min(n, t0 + width)
            zc, lc = z[block, :t1], lam[block, :t1]
            for sign, out in ((1, lower), (-1, upper)):
                capital = lambda m, sign=sign: _log_capital(zc, lc, m, sign, t0)  # noqa: E731
                out[block, t0:t1] = _bisect_side(capital, (zc.shape[0], t1 - t0), sign, threshold)
    return lower, upper


def _bisect_side(log_capital: Callable[[np.ndarray], np.ndarray], shape: tuple, sign: int, threshold: float) -> np.ndarray:
    """The lower (sign=+1) or upper (sign=-1) end of ``{m in [0, 1]: log_capital(m) < threshold}``.

    K+ decreases in m, so the m it rejects lie below the lower end; K- increases,
    so its rejected m lie above the upper end.
    """
    lo, hi = np.zeros(shape), np.ones(shape)
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        rejected = log_capital(mid) >= threshold
        if sign > 0:
            lo, hi = np.where(rejected, mid, lo), np.where(rejected, hi, mid)
        else:
            lo, hi = np.where(rejected, lo, mid), np.where(rejected, mid, hi)
    return lo if sign > 0 else hi


def _t_mixture_cs(
    x: np.ndarray, level: float, bounds: tuple[float, float], prior_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    return _t_mixture_bounds(x, level, prior_scale)


def _betting_cs(
    x: np.ndarray, level: float, bounds: tuple[float, float], prior_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = bounds
    low, high = _betting_bounds((x - lo) / (hi - lo), level)
    return lo + (hi - lo) * low, lo + (hi - lo) * high


@dataclass(frozen=True)
class _Method:
    reference: str
    compute: Callable[[np.ndarray, float, tuple[float, float], float], tuple[np.ndarray, np.ndarray]]
    """Raw CS of each row of x (studies x n): (x, level, bounds, prior_scale) -> (lower, upper)."""
    parameters: Callable[[float], dict[str, Any]]
    """The method's parameters for the record, from prior_scale."""
    reaches: Callable[..., bool]
    """Can ``n`` values without spread (on [0, 1]) reach ``halfwidth`` (a share of the range)?"""


METHODS: dict[str, _Method] = {
    "t_mixture": _Method(
        "Wang & Ramdas 2024 (arXiv:2310.03722), after Lai 1976: Gaussian mixture over the standardised"
        " effect, right-Haar mixture over sigma",
        _t_mixture_cs,
        lambda prior_scale: {"prior_scale": float(prior_scale)},
        lambda n, **kw: _t_mixture_finite(n, **kw),
    ),
    "betting": _Method(
        "Waudby-Smith & Ramdas 2023, JRSS B; hedged capital, predictable plug-in bets",
        _betting_cs,
        lambda prior_scale: {
            "theta": THETA,
            "truncation": TRUNCATION,
            "prior_mean": PRIOR_MEAN,
            "prior_variance": PRIOR_VARIANCE,
            "fake_obs": FAKE_OBS,
        },
        lambda n, **kw: _betting_constant_reaches(n, **kw),
    ),
}
"""The confidence-sequence methods by name (the ``method`` argument)."""


def _check(level: float, bounds: Sequence[float], method: str) -> tuple[float, float]:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(level, bool) or not (isinstance(level, numbers.Real) and 0 < level < 1):
        raise ValueError(f"level must be strictly between 0 and 1, got {level!r}")
    lo, hi = (float(b) for b in bounds)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"bounds must be two finite numbers lo < hi, got {tuple(bounds)!r}")
    return lo, hi


def confidence_bounds(
    x: np.ndarray,
    *,
    level: float = DEFAULT_LEVEL,
    bounds: Sequence[float] = ACCURACY_BOUNDS,
    method: str = DEFAULT_METHOD,
    prior_scale: float = PRIOR_SCALE,
) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` of the CS of every row of ``x`` (studies x n, values in order), vectorised.

    The arrays behind :func:`confidence_sequence`, for simulations of many
    studies at once: running-intersected and clipped to ``bounds``.
    """
    lo, hi = _check(level, bounds, method)
    x = np.atleast_2d(np.asarray(x, dtype=float))
    low, high = METHODS[method].compute(x, level, (lo, hi), prior_scale)
    low = np.maximum.accumulate(np.clip(low, lo, hi), axis=-1)
    high = np.minimum.accumulate(np.clip(high, lo, hi), axis=-1)
    return low, high


def _values(values: Any, bounds: tuple[float, float] | None) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"values must be a non-empty 1-d sequence, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite numbers (drop failed seeds first)")
    if bounds is not None and (x.min() < bounds[0] or x.max() > bounds[1]):
        raise ValueError(f"values must lie within bounds {bounds}, got [{x.min():g}, {x.max():g}]")
    return x


def _frame(x: np.ndarray, low: np.ndarray, high: np.ndarray) -> pd.DataFrame:
    n = np.arange(1, x.size + 1)
    mean = np.cumsum(x) / n
    return pd.DataFrame(
        {"n": n, "mean": mean, "lower": low, "upper": high, "halfwidth": np.maximum(high - low, 0.0) / 2}
    )


def method_record(
    method: str = DEFAULT_METHOD,
    *,
    level: float = DEFAULT_LEVEL,
    bounds: Sequence[float] = ACCURACY_BOUNDS,
    prior_scale: float = PRIOR_SCALE,
) -> dict[str, Any]:
    """The JSON-able description of a CS: method, reference, level, bounds and parameters."""
    lo, hi = _check(level, bounds, method)
    spec = METHODS[method]
    return {
        "method": method,
        "reference": spec.reference,
        "level": float(level),
        "bounds": [lo, hi],
        "parameters": spec.parameters(prior_scale),
        "running_intersection": True,
    }


def confidence_sequence(
    values: Sequence[float] | np.ndarray | pd.Series,
    *,
    level: float = DEFAULT_LEVEL,
    bounds: Sequence[float] = ACCURACY_BOUNDS,
    method: str = DEFAULT_METHOD,
    prior_scale: float = PRIOR_SCALE,
) -> pd.DataFrame:
    """Anytime-valid confidence sequence for the mean of ``values`` taken in order (seed order).

    Returns one row per number of seeds: ``n``, ``mean`` (running mean),
    ``lower``, ``upper`` (the running-intersected CS, inside ``bounds``) and
    ``halfwidth`` = (upper - lower) / 2; ``attrs["method"]`` holds
    :func:`method_record`. ``bounds`` are the known range of a single outcome
    ([0, 100] for accuracies in percent); the betting method uses them for its
    guarantee, the t-mixture only clips to them.
    """
    lo, hi = _check(level, bounds, method)
    x = _values(values, (lo, hi))
    low, high = confidence_bounds(x[None], level=level, bounds=(lo, hi), method=method, prior_scale=prior_scale)
    frame = _frame(x, low[0], high[0])
    frame.attrs["method"] = method_record(method, level=level, bounds=(lo, hi), prior_scale=prior_scale)
    return frame


def fixed_t_interval_path(
    values: Sequence[float] | np.ndarray | pd.Series, level: float = DEFAULT_LEVEL
) -> pd.DataFrame:
    """The fixed-n Student t-interval recomputed after every seed, for comparison.

    Same columns as :func:`confidence_sequence`. Valid at one n fixed in
    advance; checked after every seed it under-covers (the problem a CS solves).
    NaN bounds at n = 1.
    """
    _check(level, (0, 1), DEFAULT_METHOD)
    x = _values(values, None)
    low, high = t_interval_bounds(x[None], level)
    return _frame(x, low[0], high[0])


def t_interval_bounds(x: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` of the fixed-n t-interval after every seed, for each row of ``x`` (vectorised)."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    n, mean, ss = _running_moments(x)
    with quiet():
        q = stats.t.ppf(0.5 + level / 2, n - 1)
        half = q * np.sqrt(ss / (n - 1) / n)
    half = np.where(n >= 2, half, np.nan)
    return mean - half, mean + half


# --------------------------------------------------------------------------- the least n any data can stop at


def min_seeds(
    halfwidth: float,
    *,
    level: float = DEFAULT_LEVEL,
    bounds: Sequence[float] = ACCURACY_BOUNDS,
    method: str = DEFAULT_METHOD,
    prior_scale: float = PRIOR_SCALE,
    max_n: int = 1_000_000,
) -> int:
    """The fewest seeds with which the CS can be ``halfwidth`` narrow, whatever the data.

    The best case is data with no spread at all: the t-mixture's interval is a
    point as soon as it is finite; the betting CS still pays its second-order
    term, least for constant data at a bound (searched over constant data at 41
    points of ``bounds``). A cap below this number cannot stop on the rule.
    Returns ``max_n + 1`` when not reached by ``max_n``.
    """
    lo, hi = _check(level, bounds, method)
    if not halfwidth > 0:
        raise ValueError(f"halfwidth must be > 0, got {halfwidth!r}")
    if halfwidth >= (hi - lo) / 2:
        return 1
    reaches = METHODS[method].reaches
    test = lambda n: reaches(n, halfwidth=halfwidth / (hi - lo), level=level, prior_scale=prior_scale)  # noqa: E731
    high = 1
    while not test(high):
        if high > max_n:
            return max_n + 1
        high *= 2
    low = high // 2  # test(low) is False (or low == 0)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if test(mid) else (mid, high)
    return high


def _t_mixture_finite(n: int, *, halfwidth: float, level: float, prior_scale: float) -> bool:
    r = 1 + n * prior_scale**2
    return n >= 2 and math.log(r) > (math.log(r) - 2 * math.log(1 - level)) / n


def _betting_constant_reaches(n: int, *, halfwidth: float, level: float, prior_scale: float) -> bool:
    """Does the betting CS of ``n`` equal values (on [0, 1]) reach ``halfwidth`` anywhere in [0, 1]?"""
    v = np.linspace(0.0, 1.0, 41)[:, None]
    z = np.broadcast_to(v, (v.size, n))
    lam = _plugin_bets(z, level)
    threshold = math.log(1 / ((1 - level) * THETA))

    def final_capital(m: np.ndarray, sign: int) -> np.ndarray:  # log K_n(m), at the last n only
        m = m[:, None]
        cap = TRUNCATION / (m if sign > 0 else 1 - m)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log1p(sign * np.minimum(lam, cap) * (z - m)).sum(axis=-1)

    lower = _bisect_side(lambda m: final_capital(m, 1), (v.size,), 1, threshold)
    upper = _bisect_side(lambda m: final_capital(m, -1), (v.size,), -1, threshold)
    return bool(np.any((upper - lower) / 2 <= halfwidth))


# --------------------------------------------------------------------------- A against B on the same seeds


def paired_decision(
    diffs: Sequence[float] | np.ndarray | pd.Series,
    *,
    delta: float | None = None,
    level: float = DEFAULT_LEVEL,
    bounds: Sequence[float] = ACCURACY_BOUNDS,
    method: str = DEFAULT_METHOD,
    prior_scale: float = PRIOR_SCALE,
    mode: str = "max",
) -> dict[str, Any]:
    """Decide A against B from the paired differences ``a_i - b_i`` over the same seeds, in seed order.

    The CS of the mean difference (``bounds`` are the range of one outcome;
    a difference lies in ``[-(hi - lo), hi - lo]``) is followed seed by seed
    and the verdict is the first one it reaches:

    - ``"a_better"`` / ``"b_better"``: the interval excludes 0 (the better arm
      by ``mode``: ``"max"`` when a higher metric is better);
    - ``"equivalent"``: the interval lies inside ``[-delta, delta]`` (only
      with ``delta``);
    - ``"continue"``: neither yet.

    Because the CS holds at every n at once, stopping at the first verdict keeps
    the error rates: a wrong sign at most ``1 - level``, and "equivalent" while
    the true difference is beyond ``delta`` at most ``1 - level``. Returns
    ``verdict``, ``n_decided`` (the n of the verdict, ``None`` for continue),
    ``n``, and at the verdict's n (the last n for continue) ``mean``,
    ``lower``, ``upper``, ``halfwidth``, plus ``delta`` and ``method``
    (:func:`method_record` for the differences).
    """
    lo, hi = _check(level, bounds, method)
    if delta is not None and not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    width = hi - lo
    path = confidence_sequence(diffs, level=level, bounds=(-width, width), method=method, prior_scale=prior_scale)
    sign = 1 if mode == "max" else -1
    above, below = path["lower"].to_numpy() > 0, path["upper"].to_numpy() < 0
    inside = np.zeros(len(path), bool)
    if delta is not None:
        inside = (path["lower"].to_numpy() >= -delta) & (path["upper"].to_numpy() <= delta)
    reached = above | below | inside
    row = int(np.argmax(reached)) if reached.any() else len(path) - 1
    if not reached.any():
        verdict = "continue"
    elif above[row] or below[row]:
        verdict = "a_better" if (above[row] and sign > 0) or (below[row] and sign < 0) else "b_better"
    else:
        verdict = "equivalent"
    at = path.iloc[row]
    return {
        "verdict": verdict,
        "n_decided": int(at["n"]) if verdict != "continue" else None,
        "n": len(path),
        "mean": float(at["mean"]),
        "lower": float(at["lower"]),
        "upper": float(at["upper"]),
        "halfwidth": float(at["halfwidth"]),
        "delta": None if delta is None else float(delta),
        "method": path.attrs["method"],
    }


# --------------------------------------------------------------------------- how many seeds


def expected_stopping_n(
    sigma: float,
    *,
    halfwidth: float | None = None,
    effect: float | None = None,
    level: float = DEFAULT_LEVEL,
    prior_scale: float = PRIOR_SCALE,
    power: float = 0.8,
    n_sim: int = 2000,
    max_n: int = 4000,
    random_state: int = 0,
) -> dict[str, float]:
    """The number of seeds at which the t-mixture CS stops, by simulation of normal outcomes.

    With ``halfwidth``: seeds until the half-width is at most that; with
    ``effect``: seeds until the CS of a mean ``effect`` (> 0) excludes 0
    (paired differences with std ``sigma``). Returns ``mean``, ``median``,
    ``n_power`` (the n by which a share ``power`` of the studies stop: the
    anytime analogue of a fixed-n design with that power), ``q90`` and ``reached`` (the share stopped by
    ``max_n``; the statistics count the others as ``max_n``). The t-mixture is
    scale-equivariant, so only ``halfwidth / sigma`` or ``effect / sigma``
    matters and the location is irrelevant.
    """
    if (halfwidth is None) == (effect is None):
        raise ValueError("give exactly one of halfwidth and effect")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    rng = np.random.default_rng(random_state)
    stops = np.full(n_sim, float(max_n))
    done = np.zeros(n_sim, bool)
    for start in range(0, n_sim, 500):
        rows = slice(start, min(n_sim, start + 500))
        x = rng.normal(0.0 if effect is None else effect, sigma, (rows.stop - rows.start, max_n))
        low, high = _t_mixture_bounds(x, level, prior_scale)
        low, high = np.maximum.accumulate(low, axis=-1), np.minimum.accumulate(high, axis=-1)
        hit = (high - low) / 2 <= halfwidth if effect is None else (low > 0) | (high < 0)
        done[rows] = hit.any(axis=-1)
        stops[rows] = np.where(done[rows], hit.argmax(axis=-1) + 1, max_n)
    return {
        "mean": float(stops.mean()),
        "median": float(np.median(stops)),
        "n_power": float(np.quantile(stops, power)),
        "q90": float(np.quantile(stops, 0.9)),
        "reached": float(done.mean()),
    }


def _fixed_halfwidth_n(sigma: float, halfwidth: float, level: float) -> int:
    """Smallest n with ``t_{(1+level)/2, n-1} sigma / sqrt(n) <= halfwidth`` (sigma taken as known)."""
    z = stats.norm.ppf(0.5 + level / 2)
    n = max(2, math.ceil((z * sigma / halfwidth) ** 2))
    while stats.t.ppf(0.5 + level / 2, n - 1) * sigma / math.sqrt(n) > halfwidth:
        n += 1
    return n


SIM_LIMIT = 2000  # fixed-n seeds above which the anytime n is not simulated (n_anytime: NaN)


def _sim_horizon(n_fixed: int) -> int:
    """Seeds simulated per anytime study: far beyond what it needs (about 2-3x the fixed n)."""
    return max(200, 8 * int(n_fixed))


def _paired_seeds_needed(effect_size: float, alpha: float, power: float) -> float:
    """Pairs for a two-sided one-sample (paired) t-test to detect ``effect_size`` = delta / sigma_diff."""
    from statsmodels.stats.power import TTestPower

    with quiet():
        n = TTestPower().solve_power(effect_size=abs(effect_size), alpha=alpha, power=power, alternative="two-sided")
    return float(np.squeeze(n))


def seeds_needed_table(
    sigma: float,
    *,
    halfwidths: Sequence[float] = (0.25, 0.3, 0.5),
    deltas: Sequence[float] = (0.25, 0.5, 1.0),
    paired_sigma: float | None = None,
    noise_floor: float | None = None,
    level: float = DEFAULT_LEVEL,
    power: float = 0.8,
    anytime: bool = True,
    n_sim: int = 2000,
    random_state: int = 0,
) -> pd.DataFrame:
    """How many seeds a question needs, from a study's seed std ``sigma``.

    One row per question and target:

    - ``"halfwidth"``: the ``level`` interval of the mean at most ``target``
      wide on each side; ``n_fixed`` is the t-interval's n fixed in advance;
    - ``"delta_independent"``: detect a difference ``target`` between two
      independent arms (two-sided t-test at ``alpha = 1 - level`` with
      ``power``; :func:`analysis.seeds_needed`, about 15.7 (sigma / delta)^2 per
      arm at 0.05 / 0.8);
    - ``"delta_paired"``: the same on paired arms (the same seeds), a one-sample
      t-test on the differences, whose std is ``paired_sigma`` (a paired
      study's std of ``a_i - b_i``; by default ``sigma * sqrt(2)``, no gain from
      pairing assumed).

    ``n`` are per arm. With ``anytime``, ``n_anytime`` is what the t-mixture CS
    needs when checked after every seed (simulated, :func:`expected_stopping_n`):
    the mean stopping n for a half-width, the n by which ``power`` of the
    studies have decided for a delta. ``noise_floor`` (e.g.
    :func:`analysis.test_set_noise`'s ``binomial_std``, the std one run's
    accuracy has from the finite test set alone) flags targets below
    ``z * noise_floor``: more seeds narrow the interval for this test set's
    mean, not for the accuracy on fresh data (Jordan 2023). A target that needs more
    than :data:`SIM_LIMIT` seeds at a fixed n gets ``n_anytime`` NaN (not simulated: the
    simulation would grow with the square of sigma / target, to minutes and gigabytes).
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    _check(level, (0, 1), DEFAULT_METHOD)
    sd_pair = float(paired_sigma) if paired_sigma is not None else float(sigma) * math.sqrt(2)
    alpha = 1 - level
    rows: list[dict[str, Any]] = []
    for h in halfwidths:
        row = {"question": "halfwidth", "target": float(h), "sigma": float(sigma)}
        row["n_fixed"] = _fixed_halfwidth_n(sigma, h, level)
        if anytime and row["n_fixed"] > SIM_LIMIT:
            row["n_anytime"] = math.nan  # beyond any study: simulating it would take minutes and gigabytes
        elif anytime:
            stop = expected_stopping_n(
                sigma, halfwidth=h, level=level, n_sim=n_sim, max_n=_sim_horizon(row["n_fixed"]), random_state=random_state
            )
            row["n_anytime"] = stop["mean"]
        rows.append(row)
    for question, sd, solve in (
        ("delta_independent", float(sigma), lambda d: seeds_needed(d / sigma, alpha, power)),
        ("delta_paired", sd_pair, lambda d: _paired_seeds_needed(d / sd_pair, alpha, power)),
    ):
        for d in deltas:
            row = {"question": question, "target": float(d), "sigma": sd, "n_fixed": math.ceil(solve(d))}
            if anytime and row["n_fixed"] > SIM_LIMIT:
                row["n_anytime"] = math.nan
            elif anytime:
                # independent arms run pair by pair are paired differences with std sigma * sqrt(2)
                sd_diff = sd_pair if question == "delta_paired" else float(sigma) * math.sqrt(2)
                stop = expected_stopping_n(
                    sd_diff, effect=d, level=level, power=power, n_sim=n_sim,
                    max_n=_sim_horizon(row["n_fixed"]), random_state=random_state,
                )
                row["n_anytime"] = stop["n_power"]
            rows.append(row)
    table = pd.DataFrame(rows)
    if noise_floor is not None:
        z = stats.norm.ppf(0.5 + level / 2)
        table["noise_floor"] = float(noise_floor)
        table["below_noise_floor"] = table["target"] < z * float(noise_floor)
    return table
