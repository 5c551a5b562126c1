"""Aggregates across tasks (analysis.aggregate) against rliable (Agarwal et al. 2021).

Three oracles: rliable 1.2's own numbers on examples/aggregate_scores.csv (the file
data/rliable_reference.json, written by data/make_rliable_reference.py under rliable; rliable
does not import beside pandas 3 here), rliable's metric functions copied below, and, when it
imports, rliable itself. Coverage of the intervals by simulation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import analysis
from analysis import aggregate as ag

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = json.loads((Path(__file__).parent / "data" / "rliable_reference.json").read_text())
TOL = 1e-9


# --- rliable 1.2's rliable/metrics.py, copied as an independent oracle (Apache License 2.0,
# Copyright 2021 The Rliable Authors, github.com/google-research/rliable); scores are num_runs x num_tasks.
def rly_aggregate_mean(scores):
    mean_task_scores = np.mean(scores, axis=0, keepdims=False)
    return np.mean(mean_task_scores, axis=0)


def rly_aggregate_median(scores):
    mean_task_scores = np.mean(scores, axis=0, keepdims=False)
    return np.median(mean_task_scores, axis=0)


def rly_aggregate_optimality_gap(scores, gamma=1):
    return gamma - np.mean(np.minimum(scores, gamma))


def rly_aggregate_iqm(scores):
    return scipy.stats.trim_mean(scores, proportiontocut=0.25, axis=None)


def rly_probability_of_improvement(scores_x, scores_y):
    num_tasks = scores_x.shape[1]
    task_improvement_probabilities = []
    num_runs_x, num_runs_y = scores_x.shape[0], scores_y.shape[0]
    for task in range(num_tasks):
        if np.array_equal(scores_x[:, task], scores_y[:, task]):
            task_improvement_prob = 0.5
        else:
            task_improvement_prob, _ = scipy.stats.mannwhitneyu(scores_x[:, task], scores_y[:, task], alternative="greater")
            task_improvement_prob /= num_runs_x * num_runs_y
        task_improvement_probabilities.append(task_improvement_prob)
    return np.mean(task_improvement_probabilities)


# --- end of the copy


def _example() -> pd.DataFrame:
    table = pd.read_csv(ROOT / "examples" / "aggregate_scores.csv")
    return analysis.normalize_scores(table, score="val_top1", low=REFERENCE["chance"], high=100.0)


SETTINGS = dict(score="val_top1", n_resamples=REFERENCE["reps"], random_state=REFERENCE["seed"])


def _tidy(matrices: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = [
        {"arm": arm, "task": f"t{m}", "seed": n, "score": m_[n, m]}
        for arm, m_ in matrices.items()
        for n in range(m_.shape[0])
        for m in range(m_.shape[1])
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("task_bootstrap", [False, True])
def test_aggregates_equal_rliable(task_bootstrap: bool) -> None:
    table = analysis.aggregate_scores(_example(), task_bootstrap=task_bootstrap, **SETTINGS)
    assert list(table["metric"].unique()) == ["iqm", "mean", "median", "optimality_gap"]
    for arm, ref in REFERENCE[f"aggregates_task_bootstrap_{task_bootstrap}"].items():
        rows = table[table["arm"] == arm]
        assert (rows["n_tasks"] == 3).all() and (rows["n_runs"] == 10).all()
        np.testing.assert_allclose(rows["estimate"], ref["estimate"], rtol=0, atol=TOL)
        # the same draws as rliable's: the bootstrap intervals agree to rounding too
        np.testing.assert_allclose(rows[["ci_low", "ci_high"]].to_numpy().T, ref["ci"], rtol=0, atol=TOL)


@pytest.mark.parametrize("per_task_mean", [False, True])
def test_profiles_equal_rliable(per_task_mean: bool) -> None:
    profiles = analysis.score_profiles(_example(), taus=REFERENCE["taus"], per_task_mean=per_task_mean, **SETTINGS)
    for arm, ref in REFERENCE[f"profiles_per_task_mean_{per_task_mean}"].items():
        rows = profiles[profiles["arm"] == arm]
        np.testing.assert_allclose(rows["tau"], REFERENCE["taus"])
        np.testing.assert_allclose(rows["fraction"], ref["fraction"], rtol=0, atol=TOL)
        np.testing.assert_allclose(rows[["ci_low", "ci_high"]].to_numpy().T, ref["ci"], rtol=0, atol=TOL)


def test_improvement_equals_rliable() -> None:
    table = analysis.improvement_probabilities(_example(), pairs=[("B", "A"), ("A", "B")], **SETTINGS)
    for row in table.itertuples():
        ref = REFERENCE["improvement"][f"{row.x},{row.y}"]
        assert row.p == pytest.approx(ref["p"], abs=TOL)
        assert [row.ci_low, row.ci_high] == pytest.approx(ref["ci"], abs=TOL)
    # without pairs: every ordered pair, and P(A > B) = 1 - P(B > A)
    both = analysis.improvement_probabilities(_example(), score="val_top1", n_resamples=50).set_index(["x", "y"])["p"]
    assert both[("A", "B")] + both[("B", "A")] == pytest.approx(1.0)


@pytest.mark.parametrize("shape", [(10, 3), (5, 7), (3, 1), (12, 2)])
def test_point_estimates_equal_rliable_metrics(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for x in (rng.normal(0.8, 0.3, shape), rng.integers(0, 4, shape) / 3.0):  # continuous, and with ties
        assert ag.iqm(x) == pytest.approx(rly_aggregate_iqm(x), abs=TOL)
        assert ag.mean(x) == pytest.approx(rly_aggregate_mean(x), abs=TOL)
        assert ag.median(x) == pytest.approx(rly_aggregate_median(x), abs=TOL)
        assert ag.optimality_gap(x) == pytest.approx(rly_aggregate_optimality_gap(x), abs=TOL)
        assert ag.optimality_gap(x, 0.9) == pytest.approx(rly_aggregate_optimality_gap(x, 0.9), abs=TOL)
        y = rng.integers(0, 4, (shape[0] + 2, shape[1])) / 3.0
        assert ag.probability_of_improvement(x, y) == pytest.approx(rly_probability_of_improvement(x, y), abs=TOL)
        assert ag.probability_of_improvement(x, x) == pytest.approx(0.5)
    stacked = rng.normal(size=(4, *shape))  # vectorised over leading axes (the bootstrap's resamples)
    np.testing.assert_allclose(ag.iqm(stacked), [rly_aggregate_iqm(s) for s in stacked], atol=TOL)


def test_tables_follow_the_matrix_functions() -> None:
    rng = np.random.default_rng(3)
    matrices = {"a": rng.normal(0.7, 0.1, (6, 4)), "b": rng.normal(0.75, 0.1, (6, 4))}
    data = _tidy(matrices).sample(frac=1.0, random_state=0)  # row order does not matter
    assert all(np.array_equal(analysis.score_matrices(data)[k], v) for k, v in matrices.items())
    table = analysis.aggregate_scores(data, n_resamples=200, gamma=0.8).set_index(["arm", "metric"])
    assert table.loc[("b", "iqm"), "estimate"] == pytest.approx(rly_aggregate_iqm(matrices["b"]))
    assert table.loc[("a", "optimality_gap"), "estimate"] == pytest.approx(rly_aggregate_optimality_gap(matrices["a"], 0.8))
    assert (table["ci_low"] <= table["estimate"]).all() and (table["estimate"] <= table["ci_high"]).all()
    # the seed fixes every draw; another seed moves the intervals
    again = analysis.aggregate_scores(data, n_resamples=200, gamma=0.8).set_index(["arm", "metric"])
    pd.testing.assert_frame_equal(table, again)
    other = analysis.aggregate_scores(data, n_resamples=200, gamma=0.8, random_state=1).set_index(["arm", "metric"])
    assert not np.allclose(table["ci_low"], other["ci_low"])
    profiles = analysis.score_profiles(data, n_resamples=100)
    assert len(profiles) == 2 * ag.PROFILE_POINTS
    assert profiles.groupby("arm")["fraction"].apply(lambda f: f.is_monotonic_decreasing).all()


def test_rliable_itself_when_it_imports() -> None:
    """Where rliable and its arch import (not beside pandas 3), on fresh data and another seed."""
    try:
        from rliable import library as rly
    except Exception as error:  # noqa: BLE001 - arch < 8 raises TypeError on import under pandas 3
        pytest.skip(f"rliable does not import here: {error}")
    rng = np.random.default_rng(11)
    matrices = {"a": rng.normal(0.6, 0.2, (7, 5)), "b": rng.normal(0.65, 0.2, (7, 5))}
    np.random.seed(3)
    point, interval = rly.get_interval_estimates(matrices, lambda x: np.array([rly_aggregate_iqm(x)]), reps=300)
    table = analysis.aggregate_scores(_tidy(matrices), metrics="iqm", n_resamples=300, random_state=3)
    for arm in matrices:
        row = table[table["arm"] == arm].iloc[0]
        assert [row.estimate, row.ci_low, row.ci_high] == pytest.approx([point[arm][0], *interval[arm][:, 0]], abs=TOL)


def test_interval_coverage_by_simulation() -> None:
    """95 % stratified-bootstrap intervals of the mean over tasks cover the true mean about
    95 % of the time (percentile intervals run a little short with 10 runs per task)."""
    rng = np.random.default_rng(0)
    truth = np.array([0.5, 0.7, 0.9])
    covered, sims = 0, 300
    for _ in range(sims):
        matrix = rng.normal(truth, 0.1, size=(10, 3))
        table = analysis.aggregate_scores(_tidy({"a": matrix}), metrics="mean", n_resamples=400, random_state=int(rng.integers(1 << 30)))
        covered += bool(table["ci_low"].iloc[0] <= truth.mean() <= table["ci_high"].iloc[0])
    assert 0.88 <= covered / sims <= 0.99


def test_task_scores_from_studies(seed_study: Path, other_seed_study: Path, grid_study: Path) -> None:
    a, b = analysis.load_study(seed_study), analysis.load_study(other_seed_study)
    data = analysis.task_scores({("A", "t1"): a, ("B", "t1"): b.trials, ("A", "t2"): a, ("B", "t2"): b})
    assert list(data.columns) == ["arm", "task", "seed", "score"]
    ok = a.trials[a.trials["status"] == "ok"]
    assert len(data[(data.arm == "A") & (data.task == "t1")]) == len(ok)  # the diverged and errored trial left out
    assert set(data.groupby(["arm", "task"]).size()) == {len(ok), len(b.trials)}
    grid = analysis.task_scores({"cifar": analysis.load_study(grid_study)}, arm="lr", metric="v2_top1")
    assert set(grid["arm"]) == {0.005, 0.008} and set(grid["task"]) == {"cifar"}
    with pytest.raises(ValueError, match="unequal runs per task"):  # arm A: 1 run on t3, 18 on t1
        analysis.score_matrices(pd.concat([data, data.iloc[:1].assign(task="t3")]))
    with pytest.raises(ValueError, match=r"not \(arm, task\)"):
        analysis.task_scores({"t1": a})


def test_bad_input_is_named() -> None:
    data = _tidy({"a": np.ones((3, 2)), "b": np.ones((3, 2))})
    with pytest.raises(ValueError, match="arm 'b' has no score on task"):
        analysis.score_matrices(data[~((data.arm == "b") & (data.task == "t1"))])
    with pytest.raises(ValueError, match=r"arm 'a' has unequal runs per task \(t0: 2, t1: 3\)"):
        analysis.score_matrices(data.drop(index=0))
    with pytest.raises(ValueError, match="metrics must be among"):
        analysis.aggregate_scores(data, metrics="best")
    with pytest.raises(ValueError, match="no column 'score'"):
        analysis.aggregate_scores(data.rename(columns={"score": "acc"}))
    with pytest.raises(ValueError, match="no arm 'c'"):
        analysis.improvement_probabilities(data, pairs=[("a", "c")])
    with pytest.raises(ValueError, match="low names no value for task"):
        analysis.normalize_scores(data, low={"t0": 0.0})
    # a trials table: only status ok counts (a diverged trial's finite score too is left out)
    trials = pd.concat([data.assign(status="ok"), data.iloc[:1].assign(status="diverged", score=0.0)])
    assert np.array_equal(analysis.score_matrices(trials)["a"], np.ones((3, 2)))
    with pytest.raises(ValueError, match="unequal runs per task"):
        analysis.score_matrices(trials, status=None)
    with pytest.raises(ValueError, match="confidence"):
        analysis.score_profiles(data, confidence=95)


def test_normalize_scores() -> None:
    data = pd.DataFrame({"task": ["x", "x", "y"], "score": [55.0, 100.0, 10.0]})
    out = analysis.normalize_scores(data, low={"x": 10.0, "y": 10.0})
    assert out["score"].tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert data["score"].tolist() == [55.0, 100.0, 10.0]  # the input is left alone
    losses = analysis.normalize_scores(pd.DataFrame({"task": ["x", "x"], "score": [2.0, 0.5]}), low=2.5, high=0.0)
    assert losses["score"].tolist() == pytest.approx([0.2, 0.8])  # a lower loss is a higher score


def test_plots_draw_the_tables() -> None:
    import matplotlib.pyplot as plt

    data = _example()
    table = analysis.aggregate_scores(data, score="val_top1", n_resamples=100)
    _, ax = plt.subplots()
    assert analysis.plot_aggregate(table, metric="optimality_gap", ax=ax) is ax
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A", "B"] and len(ax.patches) == 2
    low = table.set_index(["arm", "metric"]).loc[("A", "optimality_gap"), "ci_low"]
    assert ax.patches[0].get_x() == pytest.approx(low)
    with pytest.raises(ValueError, match="no metric 'best'"):
        analysis.plot_aggregate(table, metric="best")
    ax = analysis.plot_profiles(analysis.score_profiles(data, score="val_top1", n_resamples=100))
    assert len(ax.lines) == 2 and len(ax.collections) == 2 and ax.get_legend() is not None
    ax = analysis.plot_improvement(analysis.improvement_probabilities(data, score="val_top1", n_resamples=100))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["P(A > B)", "P(B > A)"] and len(ax.patches) == 2


def test_notebook_runs_on_the_shipped_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from test_analysis_notebooks import _execute, _text

    monkeypatch.setenv("RSB_SCORES", str(ROOT / "examples" / "aggregate_scores.csv"))  # Jupyter's ../examples from notebooks/
    notebook = _execute("aggregate_across_tasks.ipynb", None, monkeypatch)
    text = _text(notebook)
    assert "optimality_gap" in text and "imagenette" in text and "n_runs_y" in text
    images = [o for c in notebook.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == sum("analysis.plot_" in c.source for c in notebook.cells) == 4
