"""Write rliable_reference.json: rliable 1.2's numbers on examples/aggregate_scores.csv.

Run in an environment where rliable works (it needs arch < 8, which does not import under
pandas 3; e.g. a venv with ``pip install rliable "pandas<3"``), from the project's root:

    python tests/analysis/data/make_rliable_reference.py

tests/analysis/test_aggregate.py checks analysis.aggregate against the file. The matrices are
``runs x tasks``, arms A then B, tasks and seeds sorted, scores normalized as
``(val_top1 - chance) / (100 - chance)``; rliable's bootstrap draws from numpy's global
generator, seeded with ``np.random.seed(SEED)`` before each call.
"""

import json
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
from rliable import library as rly
from rliable import metrics

ROOT = Path(__file__).resolve().parents[3]
CHANCE = {"cifar10": 10.0, "cifar100": 1.0, "imagenette": 10.0}
SEED = 7
REPS = 2000
TAUS = np.linspace(0.6, 1.0, 9)


def matrices() -> dict:
    table = pd.read_csv(ROOT / "examples" / "aggregate_scores.csv")
    chance = table["task"].map(CHANCE)
    table["score"] = (table["val_top1"] - chance) / (100.0 - chance)
    out = {}
    for arm, rows in table.groupby("arm"):
        tasks = sorted(rows["task"].unique())
        out[arm] = np.column_stack([rows[rows.task == t].sort_values("seed")["score"].to_numpy() for t in tasks])
    return out


def aggregates(x):
    return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), metrics.aggregate_median(x), metrics.aggregate_optimality_gap(x)])


def main() -> None:
    scores = matrices()
    result = {"rliable": version("rliable"), "arch": version("arch"), "seed": SEED, "reps": REPS, "taus": TAUS.tolist(), "chance": CHANCE}
    for task_bootstrap in (False, True):
        np.random.seed(SEED)
        point, interval = rly.get_interval_estimates(scores, aggregates, reps=REPS, task_bootstrap=task_bootstrap)
        result[f"aggregates_task_bootstrap_{task_bootstrap}"] = {
            arm: {"estimate": point[arm].tolist(), "ci": interval[arm].tolist()} for arm in scores
        }
    for per_task_mean in (False, True):
        np.random.seed(SEED)
        profile, bands = rly.create_performance_profile(scores, TAUS, use_score_distribution=not per_task_mean, reps=REPS)
        result[f"profiles_per_task_mean_{per_task_mean}"] = {
            arm: {"fraction": profile[arm].tolist(), "ci": bands[arm].tolist()} for arm in scores
        }
    np.random.seed(SEED)
    pairs = {"B,A": (scores["B"], scores["A"]), "A,B": (scores["A"], scores["B"])}
    point, interval = rly.get_interval_estimates(pairs, metrics.probability_of_improvement, reps=REPS)
    result["improvement"] = {key: {"p": float(point[key]), "ci": np.ravel(interval[key]).tolist()} for key in pairs}
    (Path(__file__).parent / "rliable_reference.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
