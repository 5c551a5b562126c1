"""`rsb_tune.compare` answers: the difference with its interval, P(A > B), the decision, the
config keys that differ, warnings for confounds, and no library warning on the terminal.
Also: listing a missing storage, and errors that name arguments as the caller spells them."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml
from scipy import stats

import rsb_tune
from rsb_tune.errors import StudyError, UserError, arg, spoken_as_flags
from tests.analysis.synthetic_study import write_study
from tests.conftest import assert_user_error, run_cli


def _study(storage, name, recipe, epochs, *, seed, shift=0.0, seeds=range(8)):
    """A synthetic study (tests/analysis/synthetic_study.py) whose study.yaml holds the base
    config and sources that rsb-tune resolves for ``recipe`` with ``--epochs``, and a plan."""
    from rsb_tune.planning.config import Layer, resolve
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.recipes import get_recipe

    path = write_study(storage, name, seeds=tuple(seeds), n_epochs=epochs, seed=seed, effects=lambda _: shift)
    base = resolve(get_recipe(recipe), get_dataset("digits").profile, [Layer("--epochs", {"epochs": epochs})])
    meta = yaml.safe_load((path / "study.yaml").read_text())
    meta |= {"recipe": recipe, "base_config": json.loads(json.dumps(dict(base.values))), "base_config_sources": dict(base.sources)}
    (path / "study.yaml").write_text(yaml.safe_dump(meta))
    (path / "plan.json").write_text(json.dumps({f"trial_{i:05d}": {} for i in range(len(seeds))}))
    return path


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """Seed studies of 8 seeds: A2 at 15 and at 2 epochs, A3 at 2 epochs, and A3 at 2 epochs
    far better than the others (a difference so large that statsmodels' power solver used to
    warn)."""
    root = tmp_path_factory.mktemp("compare")
    _study(root, "a2-e15", "A2", 15, seed=0)
    _study(root, "a2-e2", "A2", 2, seed=1)
    _study(root, "a3-e2", "A3", 2, seed=2)
    _study(root, "a3-far", "A3", 2, seed=3, shift=3.0)
    return root


def _values(storage, name, metric="val_top1"):
    import pandas as pd

    trials = pd.read_parquet(storage / name / "trials.parquet")
    return trials.loc[trials["status"] == "ok", metric].to_numpy(dtype=float)


def test_the_answer_matches_an_independent_computation(storage):
    result = rsb_tune.compare("a3-e2", "a2-e2", storage=storage)
    assert isinstance(result, rsb_tune.Comparison)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.decision = "A better"
    a, b = _values(storage, "a3-e2"), _values(storage, "a2-e2")
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (result.a, result.b, result.metric, result.mode, result.n_a, result.n_b) == ("a3-e2", "a2-e2", "val_top1", "max", a.size, b.size)
    assert (result.mean_a, result.mean_b) == pytest.approx((a.mean(), b.mean()))
    assert result.difference == pytest.approx(a.mean() - b.mean())
    assert (result.level, result.low, result.high) == pytest.approx((0.95, welch.low, welch.high))
    pairs = a[:, None] - b[None, :]
    assert result.p_a_better == pytest.approx(np.mean(pairs > 0) + 0.5 * np.mean(pairs == 0))
    assert result.p_a_better_low <= result.p_a_better <= result.p_a_better_high
    expected = "A better" if welch.low > 0 else "B better" if welch.high < 0 else "no difference shown"
    assert result.decision == expected
    assert "Welch" in result.interval_method and "pairs" in result.p_method
    # A3 against A2 at the same epochs: what differs follows from the recipes; nothing to warn
    assert result.differing_keys["recipe"] == ("A3", "A2")
    assert {"lr", "drop_path", "auto_augment"} <= set(result.differing_keys) and "epochs" not in result.differing_keys
    assert not set(result.differing_keys) & {"seed", "model_seed", "data_seed", "aug_seed"}
    assert result.confounds == () and result.warnings == ()
    line = str(result)
    assert line == result.line() and "\n" not in line
    assert line.startswith("A (a3-e2, n=8) vs B (a2-e2, n=8): val_top1") and line.endswith(f": {result.decision}")
    assert f"P(A > B) = {result.p_a_better:.2f}" in line and "95% Welch t-interval" in line
    # the report is still written, with the same answer in it
    summary = json.loads((result.report / "summary.json").read_text())
    assert result.report == storage / "compare-a3-e2-vs-a2-e2"
    assert summary["comparison"]["line"] == line and summary["comparison"]["decision"] == result.decision
    assert "Verdict" in (result.report / "index.html").read_text()


def test_the_decision_follows_the_interval_in_the_metrics_direction(storage):
    from analysis import compare_studies, load_study

    a, b = load_study(storage / "a2-e2"), load_study(storage / "a3-e2")

    def shifted(study, metric, by):
        return dataclasses.replace(study, trials=study.trials.assign(**{metric: study.trials[metric] + by}))

    kw = dict(n_resamples=199)
    level = shifted(a, "val_top1", b.trials["val_top1"].mean() - a.trials["val_top1"].mean())  # the same mean as B
    same = compare_studies(level, b, **kw)
    assert same.decision == "no difference shown" and same.low < 0 < same.high
    up = compare_studies(shifted(a, "val_top1", 20), b, **kw)
    assert (up.decision, up.p_a_better) == ("A better", 1.0) and up.low > 0
    down = compare_studies(shifted(a, "val_top1", -20), b, **kw)
    assert (down.decision, down.p_a_better) == ("B better", 0.0) and down.high < 0
    # a loss: lower is better, so A's lower loss is A better, with P(A > B) the share A wins
    loss = compare_studies(shifted(a, "val_loss", -5), b, metric="val_loss", **kw)
    assert (loss.mode, loss.decision, loss.p_a_better) == ("min", "A better", 1.0) and loss.high < 0
    assert "lower is better" in loss.line()
    # one ok value: no interval, said so
    one = compare_studies(dataclasses.replace(a, trials=a.trials.head(1)), b, **kw)
    assert one.decision == "no interval" and any("at least 2" in w for w in one.warnings)


def test_studies_that_differ_in_epochs_are_warned_about(storage):
    result = rsb_tune.compare("a2-e15", "a2-e2", storage=storage)
    assert result.differing_keys["epochs"] == (15, 2)
    assert result.confounds == ("epochs",)  # warmup_epochs, epoch_scale follow from the epochs
    assert {"warmup_epochs", "epoch_scale"} <= set(result.differing_keys)
    assert len(result.warnings) == 1 and "epochs (15 vs 2, both from --epochs)" in result.warnings[0]
    # different recipes and different epochs: the recipe is compared, the epochs are not
    mixed = rsb_tune.compare("a2-e15", "a3-e2", storage=storage)
    assert mixed.confounds == ("epochs",) and "not only in what is compared (recipe" in mixed.warnings[0]
    # named as compared: no warning
    named = rsb_tune.compare("a2-e15", "a2-e2", storage=storage, keys=["epochs"])
    assert named.warnings == () and named.confounds == ()
    with pytest.raises(UserError, match="keys=: unknown config key 'epoch'; did you mean 'epochs'"):
        rsb_tune.compare("a2-e15", "a2-e2", storage=storage, keys=["epoch"])


def test_cli_prints_the_verdict_the_warnings_and_no_library_warning(storage, tmp_path):
    env = {"PYTHONWARNINGS": "always"}  # a library warning would show, were one raised
    proc = run_cli("compare", "a3-far", "a2-e15", "--storage", str(storage), "--out", str(tmp_path / "cmp"), env=env)
    assert proc.returncode == 0, proc.stderr
    verdict, report = proc.stdout.strip().splitlines()
    assert verdict.startswith("A (a3-far, n=8) vs B (a2-e15, n=8): val_top1 A - B = +") and verdict.endswith(": A better")
    assert report == f"report: {tmp_path / 'cmp' / 'index.html'}" and (tmp_path / "cmp" / "index.html").exists()
    warnings = proc.stderr.strip().splitlines()
    assert warnings and all(w.startswith("rsb-tune: warning: ") for w in warnings), proc.stderr
    assert "epochs (2 vs 15, both from --epochs)" in proc.stderr
    assert "Warning" not in proc.stderr  # ConvergenceWarning, RuntimeWarning, ... (ours is lower case)
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    assert summary["comparison"]["line"] == verdict
    assert {r["metric"]: r for r in summary["compare"]}["val_top1"]["seeds_needed"] == 2.0  # solved, not NaN


def test_list_studies_of_a_missing_directory_is_a_user_error(tmp_path):
    missing = tmp_path / "no" / "such"
    with pytest.raises(StudyError, match="no such directory") as info:
        rsb_tune.list_studies(missing)
    assert f"storage={str(missing)!r}" in str(info.value) and "--storage" not in str(info.value)
    assert rsb_tune.list_studies(tmp_path) == []  # an existing directory without studies


def test_errors_name_arguments_as_the_caller_spells_them(tmp_path):
    missing = str(tmp_path / "none")
    for call in (lambda: rsb_tune.load("x", storage=missing), lambda: rsb_tune.compare("x", "y", storage=missing)):
        with pytest.raises(StudyError) as info:
            call()
        assert "pass storage=" in str(info.value) and "--storage" not in str(info.value)
    with pytest.raises(UserError, match=r"n= must be >= 1"):
        rsb_tune.plan_seeds(0)
    with pytest.raises(UserError, match=r"cpus_per_trial= must be > 0"):
        rsb_tune.seeds(2, cpus_per_trial=0)
    assert (arg("storage"), arg("storage", "/x"), arg("overrides", flag="--set")) == ("storage=", "storage='/x'", "overrides=")
    with spoken_as_flags():
        assert (arg("storage"), arg("storage", "/x"), arg("seed_start"), arg("overrides", flag="--set")) == ("--storage", "--storage /x", "--seed-start", "--set")
    assert arg("storage") == "storage="  # only inside
    assert_user_error(run_cli("compare", "x", "y", "--storage", missing), "no study 'x'", "pass --storage")
