"""Aggregates across tasks: rliable's methods (Agarwal et al. 2021) on tidy score tables.

One table holds every run: a row per arm (algorithm, recipe), task (dataset) and seed, with
its score (higher is better; put tasks on one scale first with :func:`normalize_scores`).
From it:

- :func:`aggregate_scores`: the interquartile mean (IQM), mean, median and optimality gap of
  each arm over all its tasks and runs, with stratified-bootstrap intervals;
- :func:`score_profiles`: performance profiles (the share of runs, or of task means, above
  each threshold tau) with bootstrap bands;
- :func:`improvement_probabilities`: the probability of improvement P(X > Y), the average over
  tasks of the share of run pairs in which X beats Y (ties half), with intervals.

The array functions in :data:`AGGREGATES` and :func:`probability_of_improvement` take score
matrices shaped ``(..., runs, tasks)`` (rliable's ``num_runs x num_tasks``), vectorised over
leading axes. The stratified bootstrap resamples the runs within each task (and, with
``task_bootstrap=True``, the tasks too) and takes percentile intervals. Its draws are those of
rliable 1.2 (``numpy.random.RandomState`` seeded with ``random_state``, the arms in the table's
sorted order, one call each): with ``np.random.seed(random_state)`` before rliable's call on
the same matrices, the intervals agree to rounding, not only within bootstrap error.

:func:`task_scores` builds the table from several studies' trials tables.

Reference: Agarwal, Schwarzer, Castro, Courville, Bellemare 2021, "Deep Reinforcement
Learning at the Edge of the Statistical Precipice" (NeurIPS); github.com/google-research/rliable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.contract import DEFAULT_METRIC

from analysis._tables import OK, as_list, counted_rows, require_columns
from analysis.stats import CONFIDENCE, N_RESAMPLES, prob_greater

__all__ = [
    "AGGREGATES",
    "aggregate_scores",
    "improvement_probabilities",
    "normalize_scores",
    "probability_of_improvement",
    "score_matrices",
    "score_profiles",
    "task_scores",
]

GAMMA = 1.0  # the optimality gap's target: a normalized score of 1 (rliable's default)
CHUNK = 1000  # at most this many bootstrap resamples drawn and evaluated at once,
CHUNK_VALUES = 200_000  # and about this many resampled scores (bounded memory; the draws do not depend on it)
PROFILE_POINTS = 101  # thresholds of a profile when none are given

# --------------------------------------------------------------------------- point estimates on matrices (..., runs, tasks)


def iqm(scores: np.ndarray) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50 % of all runs of all tasks (25 % trimmed)."""
    scores = np.asarray(scores, dtype=float)
    return stats.trim_mean(scores.reshape(*scores.shape[:-2], -1), 0.25, axis=-1)


def mean(scores: np.ndarray) -> np.ndarray:
    """The mean over tasks of each task's mean over runs."""
    return np.mean(np.mean(scores, axis=-2), axis=-1)


def median(scores: np.ndarray) -> np.ndarray:
    """The median over tasks of each task's mean over runs."""
    return np.median(np.mean(scores, axis=-2), axis=-1)


def optimality_gap(scores: np.ndarray, gamma: float = GAMMA) -> np.ndarray:
    """How far the runs fall short of ``gamma`` on average (scores above ``gamma`` count as ``gamma``); lower is better."""
    scores = np.asarray(scores, dtype=float)
    return gamma - np.mean(np.minimum(scores, gamma).reshape(*scores.shape[:-2], -1), axis=-1)


AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": iqm,
    "mean": mean,
    "median": median,
    "optimality_gap": optimality_gap,
}


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) averaged over tasks: per task the share of run pairs (x_i, y_j) with x_i > y_j,
    ties half (Mann-Whitney U / (n_x n_y)). ``x`` is ``(..., runs_x, tasks)``, ``y`` ``(..., runs_y, tasks)``."""
    return np.mean(prob_greater(x, y, axis=-2), axis=-1)


# --------------------------------------------------------------------------- from tidy tables to matrices


def normalize_scores(
    data: pd.DataFrame,
    *,
    low: float | Mapping[Any, float] = 0.0,
    high: float | Mapping[Any, float] = 100.0,
    score: str = "score",
    task: str = "task",
) -> pd.DataFrame:
    """``data`` with ``score`` mapped to ``(score - low) / (high - low)`` per task.

    ``low`` and ``high`` are numbers or ``{task: number}`` (every task named): a task's chance
    score and a perfect (or reference) score put tasks on one scale, where 1 is the target of
    the optimality gap. The defaults turn an accuracy in percent into a fraction. A ``low``
    above ``high`` turns a loss into a higher-is-better score.
    """
    require_columns(data, [score, task], "data")
    bounds = {}
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, Mapping):
            missing = sorted(set(data[task]) - set(value), key=str)
            if missing:
                raise ValueError(f"normalize_scores: {name} names no value for task(s) {', '.join(map(str, missing))}")
            bounds[name] = data[task].map(value).astype(float)
        else:
            bounds[name] = float(value)
    span = bounds["high"] - bounds["low"]
    if np.any(np.asarray(span) == 0):
        raise ValueError("normalize_scores: high equals low for a task")
    out = data.copy()
    out[score] = (pd.to_numeric(data[score], errors="coerce") - bounds["low"]) / span
    return out


def score_matrices(
    data: pd.DataFrame,
    *,
    score: str = "score",
    arm: str = "arm",
    task: str = "task",
    seed: str = "seed",
    status: str | None = OK,
) -> dict[Any, np.ndarray]:
    """``{arm: matrix}``, each ``runs x tasks`` (rliable's layout): the arms and the tasks in
    sorted order, a task's runs in the order of ``seed``. Every arm must have the same tasks
    and, within an arm, the same number of finite scores per task (a missing run would bias
    the stratified bootstrap); the error names the arm and the task. A table with a ``status``
    column (a study's trials) counts the rows with ``status`` only (``None``: every row)."""
    require_columns(data, [score, arm, task, seed], "data")
    data = counted_rows(data, status)
    table = data.assign(_score=pd.to_numeric(data[score], errors="coerce"))
    table = table[np.isfinite(table["_score"].to_numpy(dtype=float, na_value=np.nan))]
    if table.empty:
        raise ValueError(f"score_matrices: no finite {score!r}")
    tasks = sorted(table[task].unique(), key=str)
    matrices = {}
    for name, rows in sorted(table.groupby(arm, sort=False), key=lambda item: str(item[0])):
        missing = [t for t in tasks if t not in set(rows[task])]
        if missing:
            raise ValueError(f"score_matrices: arm {name!r} has no score on task(s) {', '.join(map(str, missing))}")
        runs = {t: rows[rows[task] == t].sort_values(seed, kind="stable")["_score"].to_numpy(float) for t in tasks}
        counts = {t: v.size for t, v in runs.items()}
        if len(set(counts.values())) > 1:
            raise ValueError(
                f"score_matrices: arm {name!r} has unequal runs per task ({', '.join(f'{t}: {n}' for t, n in counts.items())}); "
                "keep the same seeds on every task"
            )
        matrices[name] = np.column_stack([runs[t] for t in tasks])
    return matrices


def task_scores(
    studies: Mapping[Any, Any],
    *,
    metric: str = DEFAULT_METRIC,
    status: str | None = OK,
    arm: str | None = None,
) -> pd.DataFrame:
    """The tidy table (``arm``, ``task``, ``seed``, ``score``) of several studies.

    ``studies`` maps ``(arm, task)`` to a study: a :class:`~analysis.StudyTables` (from
    :func:`analysis.load_study`) or its trials table. With ``arm`` a column name, it maps
    ``task`` to a study whose trials carry the arm in that column (a grid's parameter, an
    imported table's arm). Only trials with ``status`` count; ``score`` is ``metric``.
    """
    parts = []
    for key, study in studies.items():
        trials = getattr(study, "trials", study)
        require_columns(trials, [metric, "seed"], f"trials of {key!r}")
        trials = counted_rows(trials, status)
        if arm is None:
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(f"task_scores: key {key!r} is not (arm, task); pass arm=<column> for {{task: study}}")
            arms, task = pd.Series(key[0], index=trials.index), key[1]
        else:
            require_columns(trials, [arm], f"trials of {key!r}")
            arms, task = trials[arm], key
        values = pd.to_numeric(trials[metric], errors="coerce")
        parts.append(pd.DataFrame({"arm": arms.to_numpy(), "task": task, "seed": trials["seed"].to_numpy(), "score": values.to_numpy(float)}))
    if not parts:
        raise ValueError("task_scores: no study given")
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- the stratified bootstrap


def _bootstrap(
    arrays: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    n_resamples: int,
    rng: np.random.RandomState,
    task_bootstrap: bool = False,
) -> np.ndarray:
    """``statistic`` of ``n_resamples`` stratified resamples of ``arrays`` (each ``runs x tasks``):
    runs drawn with replacement within each task, each array on its own (rliable's
    ``StratifiedBootstrap`` and ``StratifiedIndependentBootstrap``). Shape ``(n_resamples, ...)``."""
    shapes = [a.shape for a in arrays]
    columns = [np.arange(s[1]) for s in shapes]
    out = []
    chunk = max(1, min(CHUNK, CHUNK_VALUES // sum(a.size for a in arrays)))
    for start in range(0, n_resamples, chunk):
        reps = min(chunk, n_resamples - start)
        if len(set(shapes)) == 1 and not task_bootstrap:  # draws of one bound in a row: one call draws them all
            together = rng.randint(0, shapes[0][0], size=(reps, len(arrays), *shapes[0]))
            draws = [[together[:, i]] for i in range(len(arrays))]
        else:  # rliable's order: every draw of one resample before the next resample
            per_rep = [_draw(rng, shapes, task_bootstrap) for _ in range(reps)]
            draws = [[np.stack(d) for d in zip(*(p[i] for p in per_rep), strict=True)] for i in range(len(arrays))]
        resampled = []
        for array, cols, draw in zip(arrays, columns, draws, strict=True):
            task_index = draw[1][:, None, :] if task_bootstrap else cols
            resampled.append(array[draw[0], task_index])
        out.append(np.asarray(statistic(*resampled)))
    return np.concatenate(out, axis=0)


def _draw(rng: np.random.RandomState, shapes, task_bootstrap: bool) -> list[tuple[np.ndarray, ...]]:
    draws = []
    for runs, tasks in shapes:
        run_index = rng.randint(0, runs, size=(runs, tasks))
        draws.append((run_index, rng.randint(0, tasks, size=(1, tasks))[0]) if task_bootstrap else (run_index,))
    return draws


def _interval(values: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1.0 - alpha)], axis=0)
    return low, high


def _check(confidence: float, n_resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples!r}")


# --------------------------------------------------------------------------- the tables


def aggregate_scores(
    data: pd.DataFrame,
    *,
    score: str = "score",
    arm: str = "arm",
    task: str = "task",
    seed: str = "seed",
    status: str | None = OK,
    metrics: str | Sequence[str] = tuple(AGGREGATES),
    gamma: float = GAMMA,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    task_bootstrap: bool = False,
    random_state: int = 0,
) -> pd.DataFrame:
    """Each arm's aggregate scores over all tasks with stratified-bootstrap percentile intervals.

    One row per arm and metric (``metrics``: names of :data:`AGGREGATES`): ``arm``, ``metric``,
    ``estimate``, ``ci_low``, ``ci_high``, ``n_tasks``, ``n_runs`` (runs per task). The metrics
    of an arm share its resamples; ``task_bootstrap`` also resamples the tasks (the spread a
    different set of tasks would give). Seeded by ``random_state`` (see the module's note).
    """
    names = as_list(metrics)
    unknown = [m for m in names if m not in AGGREGATES]
    if unknown or not names:
        raise ValueError(f"metrics must be among {', '.join(AGGREGATES)}, got {names!r}")
    _check(confidence, n_resamples)

    def statistic(scores: np.ndarray) -> np.ndarray:
        return np.stack(
            [AGGREGATES[m](scores, gamma) if m == "optimality_gap" else AGGREGATES[m](scores) for m in names], axis=-1
        )

    rng = np.random.RandomState(random_state)
    rows = []
    for name, matrix in score_matrices(data, score=score, arm=arm, task=task, seed=seed, status=status).items():
        estimate = statistic(matrix)
        low, high = _interval(_bootstrap([matrix], statistic, n_resamples, rng, task_bootstrap), confidence)
        for i, metric in enumerate(names):
            rows.append(
                {"arm": name, "metric": metric, "estimate": float(estimate[i]), "ci_low": float(low[i]),
                 "ci_high": float(high[i]), "n_tasks": matrix.shape[1], "n_runs": matrix.shape[0]}
            )  # fmt: skip
    return pd.DataFrame(rows)


def score_profiles(
    data: pd.DataFrame,
    *,
    score: str = "score",
    arm: str = "arm",
    task: str = "task",
    seed: str = "seed",
    status: str | None = OK,
    taus: Sequence[float] | np.ndarray | None = None,
    per_task_mean: bool = False,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    task_bootstrap: bool = False,
    random_state: int = 0,
) -> pd.DataFrame:
    """Performance profiles: for each threshold tau, the share of runs (of all tasks) scoring
    above tau (rliable's score distribution), or with ``per_task_mean`` the share of tasks
    whose mean over runs is above tau, with stratified-bootstrap bands.

    ``taus`` defaults to 101 points from the lowest to the highest score. One row per arm and
    tau: ``arm``, ``tau``, ``fraction``, ``ci_low``, ``ci_high``.
    """
    _check(confidence, n_resamples)
    matrices = score_matrices(data, score=score, arm=arm, task=task, seed=seed, status=status)
    if taus is None:
        pooled = np.concatenate([m.ravel() for m in matrices.values()])
        taus = np.linspace(pooled.min(), pooled.max(), PROFILE_POINTS)
    taus = np.asarray(taus, dtype=float).ravel()

    def statistic(scores: np.ndarray) -> np.ndarray:
        values = np.mean(scores, axis=-2) if per_task_mean else scores.reshape(*scores.shape[:-2], -1)
        return np.mean(values[..., None, :] > taus[:, None], axis=-1)

    rng = np.random.RandomState(random_state)
    parts = []
    for name, matrix in matrices.items():
        low, high = _interval(_bootstrap([matrix], statistic, n_resamples, rng, task_bootstrap), confidence)
        parts.append(pd.DataFrame({"arm": name, "tau": taus, "fraction": statistic(matrix), "ci_low": low, "ci_high": high}))
    return pd.concat(parts, ignore_index=True)


def improvement_probabilities(
    data: pd.DataFrame,
    *,
    score: str = "score",
    arm: str = "arm",
    task: str = "task",
    seed: str = "seed",
    status: str | None = OK,
    pairs: Sequence[tuple[Any, Any]] | None = None,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    random_state: int = 0,
) -> pd.DataFrame:
    """The probability of improvement P(X > Y) of arm X over arm Y, averaged over tasks, with
    a stratified-bootstrap percentile interval (each arm's runs resampled on their own).

    ``pairs`` lists ``(x, y)`` arms; by default every ordered pair of distinct arms. One row
    per pair: ``x``, ``y``, ``p``, ``ci_low``, ``ci_high``, ``n_tasks``, ``n_runs_x``, ``n_runs_y``.
    P(X > Y) above 0.5 says X tends to beat Y; 1 - P(X > Y) is P(Y > X).
    """
    _check(confidence, n_resamples)
    matrices = score_matrices(data, score=score, arm=arm, task=task, seed=seed, status=status)
    if pairs is None:
        pairs = [(x, y) for x in matrices for y in matrices if x != y]
    unknown = sorted({a for pair in pairs for a in pair} - set(matrices), key=str)
    if unknown:
        raise ValueError(f"improvement_probabilities: no arm {', '.join(map(repr, unknown))}; arms: {', '.join(map(str, matrices))}")
    rng = np.random.RandomState(random_state)
    rows = []
    for x, y in pairs:
        mx, my = matrices[x], matrices[y]
        low, high = _interval(_bootstrap([mx, my], probability_of_improvement, n_resamples, rng), confidence)
        rows.append(
            {"x": x, "y": y, "p": float(probability_of_improvement(mx, my)), "ci_low": float(low), "ci_high": float(high),
             "n_tasks": mx.shape[1], "n_runs_x": mx.shape[0], "n_runs_y": my.shape[0]}
        )  # fmt: skip
    return pd.DataFrame(rows)
