"""Draw the aggregate figures of docs/analysis.md (docs/img/aggregate_*.png) from the shipped table.

    python docs/figures_aggregate.py [CSV]

CSV defaults to examples/aggregate_scores.csv (two arms x three tasks x ten seeds, synthetic
val top-1 in percent); the scores are normalized as (top-1 - chance) / (100 - chance).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from figures import save

import analysis

ROOT = Path(__file__).resolve().parents[1]
CHANCE = {"cifar10": 10.0, "cifar100": 1.0, "imagenette": 10.0}


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "examples" / "aggregate_scores.csv"
    data = analysis.normalize_scores(pd.read_csv(path), score="val_top1", low=CHANCE, high=100.0)
    table = analysis.aggregate_scores(data, score="val_top1")
    save(analysis.plot_aggregate(table, metric="iqm"), "aggregate_iqm")
    save(analysis.plot_profiles(analysis.score_profiles(data, score="val_top1")), "aggregate_profiles")
    save(analysis.plot_improvement(analysis.improvement_probabilities(data, score="val_top1")), "aggregate_improvement")


if __name__ == "__main__":
    main()
