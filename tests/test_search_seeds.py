"""A search that averages over seeds: each sampled point trains every seed of the space, the
tables keep every seed, and the Optuna sampler's history holds the mean over a point's seeds."""

from __future__ import annotations

import pandas as pd
import pytest

import rsb_tune
from rsb_tune.errors import ConfigError
from rsb_tune.planning.space import load_space, space_from_mapping


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
    status = rsb_tune.load("s", storage=str(tmp_path)).status()
    assert (status.planned, status.done, status.unfinished) == (6, 6, 0)  # 2 points x 3 seeds


def test_asha_with_several_seeds_per_point_is_refused(tmp_path):
    space = tmp_path / "search.yaml"
    space.write_text("search: optuna\nnum_samples: 2\nseeds: [0, 1]\nscheduler: asha\nparams:\n  lr: {loguniform: [1.0e-3, 3.0e-2]}\n")
    with pytest.raises(ConfigError, match="asha.*stops single trials, not a point's 2 seeds"):
        load_space(space)


def test_a_search_plans_its_points_times_its_seeds():
    space = space_from_mapping({"search": "optuna", "num_samples": 4, "seeds": {"start": 0, "n": 3}, "params": {"lr": {"loguniform": [1.0e-3, 1.0e-1]}}}, "s.yaml")
    assert (space.num_samples, space.seeds, space.search_trials) == (4, (0, 1, 2), 12)


def test_a_resumed_search_tells_optuna_the_mean_of_a_points_finished_seeds(tmp_path):
    """A driver died with a point's trials finished but Optuna not yet told: resume completes
    the point with the mean of its finished seeds (a point with none finished: failed)."""
    import optuna

    from rsb_tune.runner import lifecycle
    from rsb_tune.store.directory import StudyDir
    from tests.conftest import write_event, write_minimal_study

    path = write_minimal_study(tmp_path, "s")
    (path / "events").mkdir()
    study = StudyDir(str(tmp_path), "s")
    space = space_from_mapping({"search": "optuna", "num_samples": 2, "seeds": [0, 1, 2], "params": {"lr": {"loguniform": [1.0e-3, 1.0e-1]}}}, "s.yaml")
    for i, (seed, value, status) in enumerate([(0, 90.0, "ok"), (1, 93.0, "ok"), (2, 50.0, "running")]):
        study.add_trial(f"s-{i}", {"lr": 0.01, "seed": seed})
        write_event(study, f"s-{i}", {"type": "result", "epoch": 1, "val_top1": value, "status": status})
    storage = optuna.storages.RDBStorage(f"sqlite:///{path / 'optuna.db'}")
    search = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    distributions = {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)}
    for lr in (0.01, 0.02):  # two points left RUNNING by the dead driver; 0.02 never finished a seed
        search.enqueue_trial({"lr": lr})
        search.ask(distributions)
    lifecycle.repair_search_history(study, space, "val_top1", storage)
    done, failed = optuna.load_study(study_name="s", storage=storage).trials
    assert done.state == optuna.trial.TrialState.COMPLETE and done.value == pytest.approx(91.5)
    assert failed.state == optuna.trial.TrialState.FAIL
