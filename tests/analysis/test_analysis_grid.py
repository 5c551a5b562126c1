"""Grid statistics against scipy, statsmodels-free hand computations and data with known variances."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import grid_summary, load_study, param_anova, variance_components

PARAMS = ["lr", "weight_decay"]


def _grid(effects: dict[tuple[float, float], float], seeds: int, noise: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {
            "trial_id": f"t{i}",
            "seed": s,
            "status": "ok",
            "lr": lr,
            "weight_decay": wd,
            "val_top1": 78 + effect + rng.normal(0, noise),
        }
        for i, ((lr, wd), effect, s) in enumerate(
            (config, effect, s) for config, effect in effects.items() for s in range(seeds)
        )
    ]
    return pd.DataFrame(rows)


EFFECTS = {(0.005, 0.01): 0.0, (0.005, 0.02): 0.3, (0.008, 0.01): 1.5, (0.008, 0.02): 1.6}


def test_grid_summary_rows_match_groupby() -> None:
    trials = _grid(EFFECTS, seeds=4, noise=0.2)
    table = grid_summary(trials, PARAMS)
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert table["mean"].is_monotonic_decreasing
    reference = trials.groupby(PARAMS)["val_top1"].agg(["mean", "std", "count"])
    for row in table.itertuples():
        mean, std, count = reference.loc[(row.lr, row.weight_decay)]
        assert (row.mean, row.std, row.n) == pytest.approx((mean, std, count))
        low, high = stats.t.interval(0.95, count - 1, mean, std / math.sqrt(count))
        assert (row.ci_low, row.ci_high, row.ci_method) == pytest.approx((low, high, "t"))


def _values(trials: pd.DataFrame, row) -> pd.Series:
    return trials[(trials["lr"] == row.lr) & (trials["weight_decay"] == row.weight_decay)]["val_top1"]


def test_grid_summary_tests_each_config_against_the_next() -> None:
    trials = _grid(EFFECTS, seeds=4, noise=0.2)
    table = grid_summary(trials, PARAMS)
    for upper, lower in zip(table.iloc[:-1].itertuples(), table.iloc[1:].itertuples(), strict=True):
        p = stats.ttest_ind(_values(trials, upper), _values(trials, lower), equal_var=False).pvalue
        assert upper.p_vs_next == pytest.approx(p)
        assert upper.distinguishable_from_next == (p < 0.05)
        assert upper.delta_to_next == pytest.approx(upper.mean - lower.mean)
    assert table["distinguishable_from_next"].dtype == "boolean"
    assert table["distinguishable_from_next"].isna().iloc[-1]
    # 1.6 against 1.5 with noise 0.2 and 4 seeds: not distinguishable; 1.5 against 0.3: clearly
    assert not table.iloc[0]["distinguishable_from_next"] and table.iloc[1]["distinguishable_from_next"]


def test_grid_summary_min_mode_ranks_lowest_first() -> None:
    trials = _grid(EFFECTS, seeds=2, noise=0.1)
    table = grid_summary(trials, PARAMS, mode="min")
    assert table["mean"].is_monotonic_increasing
    # the margin over the next configuration, positive in the direction of the mode
    np.testing.assert_allclose(table["delta_to_next"].iloc[:-1], np.diff(table["mean"]))


def test_one_seed_per_point_needs_outside_seed_noise() -> None:
    trials = _grid(EFFECTS, seeds=1, noise=0.0)
    unknown = grid_summary(trials, PARAMS)
    assert unknown["distinguishable_from_next"].isna().all()
    assert unknown["ci_low"].isna().all() and unknown["ci_method"].isna().all()
    known = grid_summary(trials, PARAMS, seed_std=0.1)
    first, second = known.iloc[0], known.iloc[1]
    z = abs(first["mean"] - second["mean"]) / (0.1 * math.sqrt(2))
    assert first["p_vs_next"] == pytest.approx(2 * stats.norm.sf(z))
    assert known.iloc[1]["distinguishable_from_next"]  # 1.5 against 0.3 with sigma 0.1
    assert not known.iloc[0]["distinguishable_from_next"]  # 1.6 against 1.5
    assert first["ci_high"] - first["mean"] == pytest.approx(stats.norm.ppf(0.975) * 0.1)
    assert (known["ci_method"] == "z").all()


def test_grid_summary_counts_failed_trials(grid_study: Path) -> None:
    trials = load_study(grid_study).trials.copy()
    trials.loc[0, "status"] = "error"
    trials.loc[0, "val_top1"] = np.nan
    table = grid_summary(trials, PARAMS)
    key = trials.loc[0, PARAMS]
    row = table[(table["lr"] == key["lr"]) & (table["weight_decay"] == key["weight_decay"])].iloc[0]
    assert (row["n"], row["n_failed"]) == (2, 1)
    assert table["n_failed"].sum() == 1


def test_grid_summary_rejects_bad_input() -> None:
    trials = _grid(EFFECTS, seeds=2, noise=0.1)
    with pytest.raises(ValueError, match="no column 'momentum'"):
        grid_summary(trials, ["momentum"])
    with pytest.raises(ValueError, match="params is empty"):
        grid_summary(trials, [])
    with pytest.raises(ValueError, match="mode"):
        grid_summary(trials, PARAMS, mode="best")


def test_variance_components_recover_known_variances() -> None:
    rng = np.random.default_rng(1)
    configs, seeds, between_sd, within_sd = 300, 8, 2.0, 1.0
    effects = rng.normal(0, between_sd, configs)
    trials = pd.DataFrame(
        {
            "status": "ok",
            "config": np.repeat(np.arange(configs), seeds),
            "val_top1": np.repeat(effects, seeds) + rng.normal(0, within_sd, configs * seeds),
        }
    )
    result = variance_components(trials, "config")
    assert result["var_within"] == pytest.approx(within_sd**2, rel=0.07)
    assert result["var_between"] == pytest.approx(np.var(effects, ddof=1), rel=0.07)
    assert result["share_between"] == pytest.approx(4 / 5, abs=0.04)
    assert result["share_between"] + result["share_within"] == pytest.approx(1.0)


def test_variance_components_anova_against_scipy() -> None:
    trials = _grid(EFFECTS, seeds=3, noise=0.3)
    trials = trials.drop(index=[0])  # unbalanced
    result = variance_components(trials, PARAMS)
    samples = [g["val_top1"].to_numpy() for _, g in trials.groupby(PARAMS)]
    oneway = stats.f_oneway(*samples)
    assert result["f"] == pytest.approx(oneway.statistic)
    assert result["p"] == pytest.approx(oneway.pvalue)
    total = ((trials["val_top1"] - trials["val_top1"].mean()) ** 2).sum()
    assert result["ss_between"] + result["ss_within"] == pytest.approx(total)
    assert (result["n"], result["n_configs"], result["df_within"]) == (11, 4, 7)


def test_variance_components_with_one_seed_cannot_separate() -> None:
    result = variance_components(_grid(EFFECTS, seeds=1, noise=0.1), PARAMS)
    assert result["df_within"] == 0
    assert math.isnan(result["var_within"]) and math.isnan(result["share_between"])
    with pytest.raises(ValueError, match="2 configurations"):
        variance_components(_grid({(0.005, 0.01): 0.0}, seeds=3, noise=0.1), PARAMS)


def test_param_anova_main_effects_by_hand() -> None:
    trials = _grid(EFFECTS, seeds=3, noise=0.3)
    table = param_anova(trials, PARAMS)
    assert list(table.index) == ["lr", "weight_decay", "Residual"]
    y = trials["val_top1"]
    for param in PARAMS:  # balanced design: type II SS of a main effect is its marginal SS
        marginal = sum(len(g) * (g.mean() - y.mean()) ** 2 for _, g in y.groupby(trials[param]))
        assert table.loc[param, "sum_sq"] == pytest.approx(marginal)
    assert table["share"].sum() == pytest.approx(1.0, abs=0.02)  # only the interaction is missing
    assert table.loc["lr", "share"] > table.loc["weight_decay", "share"]


def test_param_anova_skips_constant_params_and_needs_residual_df() -> None:
    trials = _grid(EFFECTS, seeds=2, noise=0.3).assign(opt="lamb")
    assert list(param_anova(trials, [*PARAMS, "opt"]).index) == ["lr", "weight_decay", "Residual"]
    with pytest.raises(ValueError, match="too few"):
        param_anova(trials.iloc[:2], PARAMS)


def test_grid_study_effects_show(grid_study: Path) -> None:
    trials = load_study(grid_study).trials
    table = grid_summary(trials, PARAMS)
    assert table.iloc[0]["lr"] == 0.008  # the simulated lr effect dominates
    assert len(table) == len(list(itertools.product([0.005, 0.008], [0.01, 0.02])))
