"""Confidence sequences of sequential seed studies: coverage by simulation, independent
implementations, the paired decision and the seeds-needed table."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
from scipy import special, stats
from statsmodels.stats.power import TTestIndPower, TTestPower

from analysis import sequential as sq

matplotlib.use("Agg")

N_STUDIES = 2000
SIGMA = 1.0  # the embedded default's seed std of val_top1, about 1 point


def _covered_throughout(lower: np.ndarray, upper: np.ndarray, mean: float, start: int = 0) -> np.ndarray:
    """Per study: the interval held ``mean`` at every n from ``start`` on (every look)."""
    inside = (lower[:, start:] <= mean) & (mean <= upper[:, start:])
    return inside.all(axis=1)


def _beta_accuracies(rng, mean: float, concentration: float, shape) -> np.ndarray:
    return 100 * rng.beta(mean * concentration, (1 - mean) * concentration, shape)


# --------------------------------------------------------------------------- coverage when looked at after every seed


@pytest.mark.parametrize(
    "kind",
    ["normal", "beta_ceiling", "beta_ceiling_strong"],
)
def test_t_mixture_covers_at_every_look_while_peeking_t_interval_does_not(kind):
    rng = np.random.default_rng(11)
    shape = (N_STUDIES, 100)
    if kind == "normal":
        mean, x = 96.0, rng.normal(96.0, SIGMA, shape)
    elif kind == "beta_ceiling":  # mean 97.5, std 1.0, skewness -0.78
        mean, x = 97.5, _beta_accuracies(rng, 0.975, 242.75, shape)
    else:  # mean 97.9, std 1.4, skewness -1.35
        mean, x = 100 * 95 / 97, _beta_accuracies(rng, 95 / 97, 97.0, shape)
    lower, upper = sq.confidence_bounds(x, method="t_mixture")
    anytime = _covered_throughout(lower, upper, mean).mean()
    t_low, t_high = sq.t_interval_bounds(x)
    peeking = _covered_throughout(t_low, t_high, mean, start=1).mean()  # the t-interval needs 2 values
    at_fixed_n = ((t_low[:, 29] <= mean) & (mean <= t_high[:, 29])).mean()
    assert anytime >= 0.95, f"{kind}: the confidence sequence covered {anytime:.3f} < 0.95"
    assert peeking <= 0.80, f"{kind}: the peeked-at t-interval covered {peeking:.3f}"
    assert anytime - peeking >= 0.15
    assert at_fixed_n >= 0.90  # at one n fixed in advance the t-interval is (about) fine: peeking is the problem


def test_betting_covers_skewed_bounded_outcomes_at_every_look():
    rng = np.random.default_rng(12)
    x = rng.beta(2.0, 8.0, (N_STUDIES, 30))  # on [0, 1], mean 0.2, skewness 0.82
    lower, upper = sq.confidence_bounds(x, method="betting", bounds=(0, 1))
    anytime = _covered_throughout(lower, upper, 0.2).mean()
    t_low, t_high = sq.t_interval_bounds(x)
    peeking = _covered_throughout(t_low, t_high, 0.2, start=1).mean()
    assert anytime >= 0.95
    assert anytime - peeking >= 0.15
    # and it is informative, not trivially [0, 1]
    assert np.median(upper[:, -1] - lower[:, -1]) < 0.4


def test_vectorised_bounds_equal_the_one_study_path():
    rng = np.random.default_rng(3)
    x = rng.normal(96, 1, (3, 40))
    for method, bounds in (("t_mixture", (0, 100)), ("betting", (90, 100))):
        lower, upper = sq.confidence_bounds(x, method=method, bounds=bounds)
        for row in range(3):
            path = sq.confidence_sequence(x[row], method=method, bounds=bounds)
            np.testing.assert_allclose(path["lower"], lower[row])
            np.testing.assert_allclose(path["upper"], upper[row])
            np.testing.assert_allclose(path["mean"], np.cumsum(x[row]) / np.arange(1, 41))
            assert path["lower"].is_monotonic_increasing and path["upper"].is_monotonic_decreasing
            assert path.attrs["method"]["method"] == method


# --------------------------------------------------------------------------- against independent implementations


def _confseq_hedged_cs(x: np.ndarray, alpha: float, breaks: int) -> tuple[np.ndarray, np.ndarray]:
    """A transcription of confseq 0.0.11's ``hedged_cs`` (Waudby-Smith & Ramdas' own package, MIT):
    the grid method, one capital process per candidate mean, with its defaults (theta 1/2,
    truncation 1/2, prior mean 1/2, prior variance 1/4, one fake observation, running
    intersection). confseq itself does not build on this machine (its C++ part needs CMake
    and Boost), so its Python algorithm is copied here loop for loop."""
    t = np.arange(1, len(x) + 1)
    mu_hat = np.minimum((0.5 + np.cumsum(x)) / (t + 1), 1)
    sigma2 = (0.25 + np.cumsum((x - mu_hat) ** 2)) / (t + 1)
    sigma2_prev = np.append(0.25, sigma2[:-1])
    lam = np.sqrt(2 * np.log(1 / (alpha / 2)) / (t * np.log(1 + t) * sigma2_prev))
    grid = np.linspace(0.0, 1.0, breaks + 1)  # confseq: arange(0, 1 + 1/breaks, 1/breaks), with m > 1 set to infinite capital
    inside = np.zeros((grid.size, x.size), bool)
    for i, m in enumerate(grid):
        with np.errstate(divide="ignore", invalid="ignore"):
            lam_pos = np.minimum(lam, 0.5 / m)
            lam_neg = np.minimum(lam, 0.5 / (1 - m))
            pos = np.cumprod(1 + lam_pos * (x - m))
            neg = np.cumprod(1 - lam_neg * (x - m))
        capital = np.maximum(0.5 * np.nan_to_num(pos), 0.5 * np.nan_to_num(neg))
        inside[i] = capital <= 1 / alpha
    lower, upper = np.zeros(x.size), np.ones(x.size)
    for j in range(x.size):
        where = np.flatnonzero(inside[:, j])
        if where.size:
            lower[j], upper[j] = grid[where[0]], grid[where[-1]]
    lower, upper = np.maximum(0, lower - 1 / breaks), np.minimum(1, upper + 1 / breaks)
    return np.maximum.accumulate(lower), np.minimum.accumulate(upper)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_betting_matches_confseq_hedged_cs(seed):
    rng = np.random.default_rng(seed)
    x = rng.beta(3.0, 5.0, 60) if seed < 2 else np.clip(rng.normal(0.96, 0.01, 60), 0, 1)
    breaks = 4000
    ref_low, ref_high = _confseq_hedged_cs(x, 0.05, breaks)
    path = sq.confidence_sequence(x, method="betting", bounds=(0, 1), level=0.95)
    # the grid method pads by one grid step outward and reads off grid points
    tolerance = 2.0 / breaks
    np.testing.assert_array_less(np.abs(path["lower"] - ref_low), tolerance)
    np.testing.assert_array_less(np.abs(path["upper"] - ref_high), tolerance)
    assert path["halfwidth"].iloc[-1] < 0.5  # the comparison is not between two trivial intervals


def _bayes_factor_by_integration(y: np.ndarray, m: float, c: float) -> float:
    """Bayes factor of H1: (mean - m) / sigma ~ N(0, c^2) against H0: mean = m, with the prior
    1/sigma on sigma, by brute-force integration over a grid of (log sigma, effect)."""
    z = y - m
    log_sigma = np.linspace(np.log(z.std() / 50 + 1e-12), np.log(np.abs(z).max() * 50 + 1e-12), 1500)
    sigma = np.exp(log_sigma)[:, None]
    effect = np.linspace(-12 * c, 12 * c, 1201)[None, :]

    def loglik(mu_shift):  # sum_i log N(z_i; mu_shift, sigma), for arrays of sigma x effect
        ss = (z[None, None, :] ** 2).sum(-1) - 2 * mu_shift * z.sum() + z.size * mu_shift**2
        return -z.size * np.log(sigma) - ss / (2 * sigma**2)

    # d sigma / sigma = d log sigma: the 1/sigma prior is flat in log sigma
    log_h1 = loglik(effect * sigma) + stats.norm.logpdf(effect, scale=c)
    h1 = special.logsumexp(log_h1) + np.log(np.diff(log_sigma)[0] * np.diff(effect[0])[0])
    log_h0 = loglik(np.zeros_like(sigma))[:, 0]
    h0 = special.logsumexp(log_h0) + np.log(np.diff(log_sigma)[0])
    return float(np.exp(h1 - h0))


@pytest.mark.parametrize("n", [14, 25])
def test_t_mixture_bounds_are_where_the_bayes_factor_reaches_one_over_alpha(n):
    rng = np.random.default_rng(n)
    y = rng.normal(96, 1, n)
    c = sq.PRIOR_SCALE
    raw_low, raw_high = sq._t_mixture_bounds(y[None], 0.95, c)
    for bound in (raw_low[0, -1], raw_high[0, -1]):
        assert _bayes_factor_by_integration(y, bound, c) == pytest.approx(20.0, rel=0.02)
    inside = (raw_low[0, -1] + raw_high[0, -1]) / 2
    assert _bayes_factor_by_integration(y, inside, c) < 20.0


def test_t_mixture_is_infinite_until_its_first_finite_n():
    first = sq.min_seeds(1e-9, method="t_mixture")
    rng = np.random.default_rng(0)
    path = sq.confidence_sequence(rng.normal(96, 1, first + 3), method="t_mixture")
    assert (path["halfwidth"].iloc[: first - 1] == 50).all()  # [0, 100] before
    assert (path["halfwidth"].iloc[first - 1 :] < 50).all()
    # closed form of the first finite n: alpha^-2 < (1 + n c^2)^(n - 1)
    c2 = sq.PRIOR_SCALE**2
    assert 2 * math.log(20) < (first - 1) * math.log(1 + first * c2)
    assert not 2 * math.log(20) < (first - 2) * math.log(1 + (first - 1) * c2)


# --------------------------------------------------------------------------- the least n


@pytest.mark.parametrize("method, bounds, halfwidth", [("t_mixture", (0, 100), 0.25), ("betting", (0, 1), 0.1)])
def test_min_seeds_is_reached_by_constant_data_and_not_before(method, bounds, halfwidth):
    n = sq.min_seeds(halfwidth, method=method, bounds=bounds)
    assert n > 2
    points = np.linspace(bounds[0], bounds[1], 41)
    reach = [sq.confidence_sequence(np.full(n, v), method=method, bounds=bounds)["halfwidth"].iloc[-1] for v in points]
    assert min(reach) <= halfwidth
    before = [sq.confidence_sequence(np.full(n - 1, v), method=method, bounds=bounds)["halfwidth"].iloc[-1] for v in points]
    assert min(before) > halfwidth


def test_betting_on_the_accuracy_range_needs_more_than_a_thousand_seeds_for_a_quarter_point():
    assert sq.min_seeds(0.25, method="betting", bounds=(0, 100)) > 1000
    assert sq.min_seeds(0.25, method="betting", bounds=(90, 100)) < sq.min_seeds(0.25, method="betting")


# --------------------------------------------------------------------------- A against B


def test_paired_decision_finds_the_better_arm():
    rng = np.random.default_rng(4)
    diffs = rng.normal(0.6, 0.7, 200)
    result = sq.paired_decision(diffs, delta=0.2)
    assert result["verdict"] == "a_better"
    assert result["lower"] > 0 and result["n_decided"] < 200
    assert result["lower"] <= 0.6 <= result["upper"]
    assert sq.paired_decision(-diffs)["verdict"] == "b_better"
    assert sq.paired_decision(diffs, mode="min")["verdict"] == "b_better"
    assert result["method"]["bounds"] == [-100.0, 100.0]


def test_paired_decision_equivalence_and_continue():
    rng = np.random.default_rng(5)
    same = rng.normal(0.0, 0.4, 200)
    result = sq.paired_decision(same, delta=0.25)
    assert result["verdict"] == "equivalent"
    assert -0.25 <= result["lower"] <= result["upper"] <= 0.25
    assert sq.paired_decision(same[:10], delta=0.25)["verdict"] == "continue"
    assert sq.paired_decision(same[:10])["n_decided"] is None


def test_paired_decision_error_rates_by_simulation():
    rng = np.random.default_rng(6)
    alpha = 0.05
    # no effect: deciding for either arm is an error
    null = rng.normal(0.0, 1.4, (N_STUDIES, 150))
    lower, upper = sq.confidence_bounds(null, bounds=(-100, 100))
    decided = ((lower > 0) | (upper < 0)).any(axis=1)
    assert decided.mean() <= alpha
    # the one-study function agrees with the vectorised verdicts
    for row in [*np.flatnonzero(decided)[:3], *np.flatnonzero(~decided)[:3]]:
        assert (sq.paired_decision(null[row])["verdict"] != "continue") == decided[row]
    # the true difference is delta: calling it "equivalent within delta" is an error
    delta = 0.3
    edge = rng.normal(delta, 0.5, (N_STUDIES, 150))
    lower, upper = sq.confidence_bounds(edge, bounds=(-100, 100))
    wrongly_equivalent = ((lower >= -delta) & (upper <= delta)).any(axis=1).mean()
    assert wrongly_equivalent <= alpha


# --------------------------------------------------------------------------- how many seeds


def test_seeds_needed_table_against_statsmodels_and_the_rule_of_thumb():
    table = sq.seeds_needed_table(1.0, halfwidths=(0.25, 0.5), deltas=(0.25, 0.5, 1.0), paired_sigma=0.8, anytime=False)
    independent = table[table["question"] == "delta_independent"].set_index("target")["n_fixed"]
    paired = table[table["question"] == "delta_paired"].set_index("target")["n_fixed"]
    for delta in (0.25, 0.5, 1.0):
        n_ind = TTestIndPower().solve_power(effect_size=delta, alpha=0.05, power=0.8)
        assert independent[delta] == math.ceil(n_ind)
        assert paired[delta] == math.ceil(TTestPower().solve_power(effect_size=delta / 0.8, alpha=0.05, power=0.8))
    # the reference's rule of thumb, 15.7 (sigma / delta)^2 per arm (normal approximation)
    assert independent[0.25] == pytest.approx(15.7 * 16, rel=0.02)
    assert independent[0.5] == pytest.approx(15.7 * 4, rel=0.03)
    for _, row in table[table["question"] == "halfwidth"].iterrows():
        n, h = int(row["n_fixed"]), row["target"]
        assert stats.t.ppf(0.975, n - 1) / math.sqrt(n) <= h < stats.t.ppf(0.975, n - 2) / math.sqrt(n - 1)
    assert "n_anytime" not in table and "noise_floor" not in table


def test_seeds_needed_table_anytime_and_noise_floor():
    table = sq.seeds_needed_table(1.0, halfwidths=(0.5,), deltas=(1.0,), noise_floor=0.2, n_sim=300)
    assert (table["n_anytime"] > table["n_fixed"]).all()  # the price of looking after every seed
    assert (table["n_anytime"] < 4 * table["n_fixed"]).all()
    assert table["below_noise_floor"].tolist() == [False, False, False]
    flagged = sq.seeds_needed_table(1.0, halfwidths=(0.5,), deltas=(1.0,), noise_floor=0.9, anytime=False)
    assert flagged.loc[flagged["question"] == "halfwidth", "below_noise_floor"].item()


def test_expected_stopping_n_is_scale_free_and_grows_as_the_target_shrinks():
    a = sq.expected_stopping_n(1.0, halfwidth=0.5, n_sim=300)
    b = sq.expected_stopping_n(2.0, halfwidth=1.0, n_sim=300)
    assert a["mean"] == pytest.approx(b["mean"])
    assert sq.expected_stopping_n(1.0, halfwidth=0.3, n_sim=300)["mean"] > a["mean"]
    assert a["reached"] == 1.0


# --------------------------------------------------------------------------- bad input and the figure


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"level": 1.0}, "level"),
        ({"level": 0}, "level"),
        ({"bounds": (5, 1)}, "bounds"),
        ({"method": "hoeffding"}, "method"),
    ],
)
def test_confidence_sequence_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sq.confidence_sequence([95.0, 96.0], **kwargs)


def test_confidence_sequence_rejects_values_outside_the_bounds():
    with pytest.raises(ValueError, match="within bounds"):
        sq.confidence_sequence([95.0, 101.0])
    with pytest.raises(ValueError, match="finite"):
        sq.confidence_sequence([95.0, float("nan")])


def test_plot_confidence_sequence_draws_on_the_given_axes():
    import matplotlib.pyplot as plt
    import pandas as pd

    from analysis import plot_confidence_sequence

    rng = np.random.default_rng(0)
    trials = pd.DataFrame({"seed": np.arange(40)[::-1], "val_top1": rng.normal(96, 1, 40), "status": "ok"})
    fig, ax = plt.subplots()
    try:
        out = plot_confidence_sequence(trials, halfwidth=0.8, ax=ax)
        assert out is ax
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert any("confidence sequence" in label for label in labels)
        assert any("t-interval" in label for label in labels)
        # the running mean follows the seeds in seed order
        mean_line = [line for line in ax.get_lines() if line.get_label() == "running mean"][0]
        ordered = trials.sort_values("seed")["val_top1"].to_numpy()
        np.testing.assert_allclose(mean_line.get_ydata(), np.cumsum(ordered) / np.arange(1, 41))
    finally:
        plt.close(fig)


def test_betting_blocks_of_times_give_the_same_path(monkeypatch):
    x = np.random.default_rng(8).normal(96, 1, (2, 120))
    whole = sq.confidence_bounds(x, method="betting")
    monkeypatch.setattr(sq, "_CHUNK_CELLS", 5000)  # 2 x 120 x 120 cells no longer fit in one block
    blocked = sq.confidence_bounds(x, method="betting")
    np.testing.assert_array_equal(whole[0], blocked[0])
    np.testing.assert_array_equal(whole[1], blocked[1])


def test_betting_handles_values_on_the_bounds():
    path = sq.confidence_sequence([0.0, 1.0] * 20 + [1.0] * 10, method="betting", bounds=(0, 1))
    assert np.isfinite(path[["lower", "upper"]].to_numpy()).all()
    assert (path["lower"] <= path["mean"]).all() and (path["mean"] <= path["upper"]).all()


def test_seeds_needed_table_does_not_simulate_beyond_any_study():
    """A pooled std of 11 points against a 0.25 half-width needs ~7,500 seeds: the anytime
    column is NaN at once instead of a simulation of minutes and gigabytes (plan-seeds hung)."""
    import time

    start = time.process_time()
    table = sq.seeds_needed_table(11.0)
    assert time.process_time() - start < 30
    big = table[table["n_fixed"] > sq.SIM_LIMIT]
    assert len(big) > 0 and big["n_anytime"].isna().all()
    small = table[table["n_fixed"] <= sq.SIM_LIMIT]
    assert small["n_anytime"].notna().all()
