"""The --until rule: parsing, every bad input, and decisions recomputable after a resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from rsb_tune.sequential import rule as stopping
from rsb_tune.errors import ConfigError, UserError, spoken_as_flags


@pytest.mark.parametrize(
    "text, value",
    [("halfwidth<=0.25", 0.25), ("halfwidth <= 0.3", 0.3), ("  halfwidth<=1e-1 ", 0.1), ("halfwidth<=2", 2.0)],
)
def test_parse_rule_accepts_the_syntax_with_spaces(text, value):
    assert stopping.parse_rule(text) == value


@pytest.mark.parametrize(
    "text, message",
    [
        ("halfwidth<0.25", "only '<=' is accepted"),
        ("halfwidth>=0.25", "only '<=' is accepted"),
        ("halfwidth=0.25", "only '<=' is accepted"),
        ("halfwidth==0.25", "only '<=' is accepted"),
        ("width<=0.25", "does not parse"),
        ("Halfwidth<=0.25", "does not parse"),
        ("halfwidth<=", "does not parse"),
        ("halfwidth<=0.25 seeds", "does not parse"),
        ("halfwidth<=0.25,n<=10", "not a number"),
        ("", "does not parse"),
        ("0.25", "does not parse"),
        ("halfwidth<=abc", "not a number"),
        ("halfwidth<=0", "> 0"),
        ("halfwidth<=-0.1", "> 0"),
        ("halfwidth<=inf", "finite"),
        ("halfwidth<=nan", "finite"),
    ],
)
def test_parse_rule_rejects_with_one_line(text, message):
    with pytest.raises(ConfigError, match=message) as error:
        stopping.parse_rule(text)
    assert "\n" not in str(error.value)
    assert "until=" in str(error.value)  # from Python; the command line's says --until:
    with spoken_as_flags(), pytest.raises(ConfigError, match="^--until "):
        stopping.parse_rule(text)
    assert isinstance(error.value, UserError) and error.value.exit_code == 2


def test_parse_rule_rejects_a_non_string():
    with pytest.raises(ConfigError, match="expected a string"):
        stopping.parse_rule(0.25)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"level": 1.0}, "level"),
        ({"level": 0.0}, "level"),
        ({"level": 1.5}, "level"),
        ({"level": True}, "level"),
        ({"level": "0.95"}, "level"),
        ({"method": "hoeffding"}, "allowed: t_mixture, betting"),
        ({"bounds": (100, 0)}, "bounds"),
        ({"bounds": (0,)}, "bounds"),
        ({"bounds": "a"}, "bounds"),
        ({"cap": 0}, "integer >= 1"),
        ({"cap": 2.5}, "integer >= 1"),
        ({"cap": 5}, "below the 12"),
        ({"cap": 100, "method": "betting"}, "below the 14"),
        ({"metric": ""}, "metric"),
        ({"metric": "val_top2"}, "did you mean .*'val_top1'"),
        ({"metric": "val_top5", "metrics": ["val_top1", "v2_top1"]}, "is not a metric; allowed: val_top1, v2_top1"),
    ],
)
def test_check_rule_rejects_bad_input(kwargs, message):
    with pytest.raises(ConfigError, match=message) as error:
        stopping.check_rule("halfwidth<=0.25", **{"cap": 100, "metric": "val_top1", **kwargs})
    assert "\n" not in str(error.value)


def test_the_cap_check_uses_the_method_minimum():
    from analysis.sequential import min_seeds

    least = min_seeds(0.25, method="t_mixture")
    assert stopping.check_rule("halfwidth<=0.25", metric="val_top1", cap=least).min_seeds == least
    with pytest.raises(ConfigError, match=f"at least {least}"):
        stopping.check_rule("halfwidth<=0.25", metric="val_top1", cap=least - 1)
    betting = min_seeds(0.25, method="betting")
    assert betting > 1000
    assert stopping.check_rule("halfwidth<=0.25", metric="val_top1", cap=betting, method="betting").min_seeds == betting


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"delta": 0}, "delta"),
        ({"delta": -1.0}, "delta"),
        ({"delta": float("inf")}, "delta"),
        ({"delta": "0.2"}, "delta"),
        ({"mode": "up"}, "mode"),
        ({"level": 0}, "level"),
        ({"cap": 3}, "below the"),
    ],
)
def test_check_paired_rejects_bad_input(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        stopping.check_paired(**{"cap": 50, "metric": "val_top1", "mode": "max", **kwargs})


def _seeds(n, mean=96.0, sigma=1.0, seed=0):
    return np.random.default_rng(seed).normal(mean, sigma, n)


def test_decide_stops_at_the_first_narrow_enough_interval_and_is_recomputable():
    rule = stopping.check_rule("halfwidth<=0.3", metric="val_top1", cap=400)
    values = _seeds(400)
    final = stopping.decide(rule, values)
    assert final.stop and final.reason == "halfwidth"
    assert final.halfwidth <= 0.3 and final.lower <= final.mean <= final.upper
    n = final.n
    # before n it continues; from n on (a resume, seeds that were already running) the answer is the same
    assert not stopping.decide(rule, values[: n - 1]).stop
    assert stopping.decide(rule, values[: n - 1]).reason == "continue"
    for k in (n, n + 1, n + 7):
        assert stopping.decide(rule, values[:k]) == final
    assert stopping.decide(rule, list(values[:n])) == stopping.decide(rule, values[:n])


def test_decide_stops_at_the_cap():
    rule = stopping.check_rule("halfwidth<=0.05", metric="val_top1", cap=30)
    values = _seeds(40)
    assert stopping.decide(rule, values[:29]).reason == "continue"
    at_cap = stopping.decide(rule, values[:30])
    assert at_cap.stop and at_cap.reason == "cap" and at_cap.n == 30
    assert stopping.decide(rule, values) == at_cap  # values beyond the cap are ignored
    assert stopping.decide(rule, []).reason == "continue" and stopping.decide(rule, []).n == 0


def test_decide_paired_verdicts():
    rule = stopping.check_paired(metric="val_top1", mode="max", cap=200, delta=0.2)
    better = stopping.decide_paired(rule, _seeds(200, mean=0.8, sigma=0.7, seed=1))
    assert better.stop and better.reason == "a_better" and better.lower > 0
    worse = stopping.decide_paired(stopping.check_paired(metric="val_top1", mode="min", cap=200), _seeds(200, 0.8, 0.7, 1))
    assert worse.reason == "b_better"
    same = stopping.decide_paired(rule, _seeds(200, mean=0.0, sigma=0.3, seed=2))
    assert same.reason == "equivalent" and -0.2 <= same.lower <= same.upper <= 0.2
    capped = stopping.decide_paired(stopping.check_paired(metric="val_top1", mode="max", cap=20), _seeds(60, mean=0.0, sigma=1.0, seed=3))
    assert capped.reason == "cap" and capped.n == 20
    assert stopping.decide_paired(stopping.check_paired(metric="val_top1", mode="max", cap=20), _seeds(10, 0.0, 1.0, 3)).reason == "continue"


def test_records_are_json_and_yaml_and_name_the_method():
    rule = stopping.check_rule("halfwidth <= 0.3", metric="val_top1", cap=200, level=0.9)
    record = stopping.decide(rule, _seeds(200)).record()
    assert json.loads(json.dumps(record)) == record
    assert yaml.safe_load(yaml.safe_dump(record)) == record
    assert record["rule"] == "halfwidth <= 0.3" and record["level"] == 0.9 and record["cap"] == 200
    assert record["method"] == "t_mixture" and record["parameters"] == {"prior_scale": 0.25}
    assert record["reason"] in ("halfwidth", "cap") and record["n_seeds"] <= 200
    paired = stopping.decide_paired(stopping.check_paired(metric="val_top1", mode="max", cap=50, delta=0.5), _seeds(50, 1.0, 0.5)).record()
    assert json.loads(json.dumps(paired)) == paired
    assert paired["bounds"] == [-100.0, 100.0] and paired["delta"] == 0.5


def _trials(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["seed", "status", "val_top1"])


def test_seed_prefix_takes_the_longest_finished_prefix_in_seed_order():
    trials = _trials(
        [(3, "ok", 95.0), (0, "ok", 96.0), (1, "diverged", float("nan")), (2, "running", float("nan")), (4, "ok", 97.0)]
    )
    prefix = stopping.seed_prefix(trials, [0, 1, 2, 3, 4], "val_top1")
    assert prefix.values == [96.0] and prefix.seeds == [0]
    assert prefix.skipped == {1: "diverged"} and prefix.waiting_for == 2
    # seed 2 finishes: the prefix runs on to the end, in seed order, not in the order of arrival
    trials.loc[trials["seed"] == 2, ["status", "val_top1"]] = ["ok", 94.0]
    prefix = stopping.seed_prefix(trials, [0, 1, 2, 3, 4], "val_top1")
    assert prefix.values == [96.0, 94.0, 95.0, 97.0] and prefix.waiting_for is None
    assert stopping.seed_prefix(trials, [4, 3], "val_top1").values == [97.0, 95.0]  # the scheduled order rules
    assert stopping.seed_prefix(trials, [0, 9], "val_top1").waiting_for == 9  # not in the table yet
    with pytest.raises(ValueError, match="more than one trial of seed 0"):
        stopping.seed_prefix(_trials([(0, "ok", 1.0), (0, "ok", 2.0)]), [0], "val_top1")


def test_paired_seed_prefix_pairs_by_seed():
    a = _trials([(0, "ok", 96.0), (1, "ok", 95.5), (2, "ok", 97.0), (3, "ok", 96.0)])
    b = _trials([(0, "ok", 95.0), (1, "error", float("nan")), (2, "ok", 96.5), (3, "running", float("nan"))])
    prefix = stopping.paired_seed_prefix(a, b, [0, 1, 2, 3], "val_top1")
    assert prefix.values == [1.0, 0.5] and prefix.seeds == [0, 2]
    assert prefix.skipped == {1: "b: error"} and prefix.waiting_for == 3
