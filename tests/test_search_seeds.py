"""A search that averages over seeds: each sampled point trains every seed of the space, the
tables keep every seed, and the Optuna sampler's history holds the mean over a point's seeds."""

from __future__ import annotations

import pandas as pd
import pytest

import rsb_tune
from rsb_tune.errors import ConfigError
from rsb_tune.planning.space import load_space


def _optuna_trials(study_dir):
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{study_dir / 'optuna.db'}")
    return optuna.load_study(study_name=study_dir.name, storage=storage).trials


@pytest.mark.e2e
def test_the_sampler_sees_the_mean_of_a_points_seeds(tmp_path):
    import optuna

    space = tmp_path / "search.yaml"
    space.write_text("recipe: A3\nsearch: optuna\nnum_samples: 2\nseeds: [0, 1, 2]\nparams:\n  lr: {loguniform: [1.0e-3, 3.0e-2]}\n")
    rsb_tune.grid(str(space), epochs=1, storage=str(tmp_path), name="s", max_concurrent=2, quiet=True)
    trials = pd.read_parquet(tmp_path / "s" / "trials.parquet")
    assert len(trials) == 6 and (trials.status == "ok").all()  # every seed of every point, recorded
    by_point = trials.groupby("lr")
    assert by_point.ngroups == 2 and all(sorted(g.seed) == [0, 1, 2] for _, g in by_point)
    assert trials.groupby("lr")["model_seed"].nunique().eq(3).all()  # each seed's own derived streams
    history = _optuna_trials(tmp_path / "s")  # the searcher's history: one trial per point
    assert [t.state for t in history] == [optuna.trial.TrialState.COMPLETE] * 2
    means = by_point["val_top1"].mean()
    for t in history:
        assert t.value == pytest.approx(means[t.params["lr"]], abs=1e-9)
    assert sorted(t.params["lr"] for t in history) == sorted(means.index)


def test_asha_with_several_seeds_per_point_is_refused(tmp_path):
    space = tmp_path / "search.yaml"
    space.write_text("search: optuna\nnum_samples: 2\nseeds: [0, 1]\nscheduler: asha\nparams:\n  lr: {loguniform: [1.0e-3, 3.0e-2]}\n")
    with pytest.raises(ConfigError, match="asha.*stops single trials, not a point's 2 seeds"):
        load_space(space)
