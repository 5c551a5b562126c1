"""Synthetic study directories written to the engine's data contract.

The studies are simulated per example: each example has a difficulty shared by
all trials, each trial an ability; a trial gets an example right with
probability sigmoid(ability - difficulty). The final accuracies are therefore
exactly 100 x the mean of the written correctness arrays, as the engine's are.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

N_VAL, N_V2 = 400, 300


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def simulate_trial(
    rng: np.random.Generator,
    difficulty: dict[str, np.ndarray],
    ability: float,
    n_epochs: int,
    status: str,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, np.ndarray]]:
    """One trial: its final row values, its epoch rows, its correctness arrays."""
    correct = {split: rng.random(d.size) < _sigmoid(ability - d) for split, d in difficulty.items()}
    final = {}
    for split, c in correct.items():
        top1 = 100 * c.mean()
        final |= {
            f"{split}_top1": top1,
            f"{split}_top5": min(100.0, top1 + 15),
            f"{split}_loss": 2.5 - top1 / 50,
        }
    done = n_epochs if status != "error" else max(1, n_epochs // 2)
    epochs = []
    for epoch in range(1, done + 1):
        scale = (epoch / n_epochs) ** 0.5
        row = {k: v * scale + (rng.normal(0, 0.5) if epoch < n_epochs else 0.0) for k, v in final.items()}
        if status == "diverged" and epoch == done:
            row = {k: np.nan if "loss" in k else 0.1 for k in final}
        lr = 0.005 * (1 - epoch / (n_epochs + 1))
        epochs.append({"epoch": epoch, "train_loss": 3.0 / epoch, "lr": lr, **row, "epoch_time_s": 1.0})
        epochs[-1]["images_per_s"] = 500.0
    if status == "error":
        final = {k: np.nan for k in final}
    elif status == "diverged":
        final = {k: v for k, v in epochs[-1].items() if k in final}
    return {**final, "epochs_done": done}, epochs, correct


def write_study(
    root: Path,
    name: str,
    *,
    kind: str = "seeds",
    grid: dict[str, Sequence[Any]] | None = None,
    effects: Callable[[dict[str, Any]], float] | None = None,
    seeds: Sequence[int] = tuple(range(20)),
    statuses: dict[int, str] | None = None,
    n_epochs: int = 5,
    ability_std: float = 0.05,
    seed: int = 0,
    started_at: str = "2025-01-01T00:00:00",
) -> Path:
    """Write ``<root>/<name>/`` with study.yaml, plan.json, trials.parquet, epochs.parquet and
    predictions/ (``rsb_tune.load`` and ``rsb_tune.list_studies`` read it as a study too)."""
    rng = np.random.default_rng(seed)
    difficulty = {"val": rng.normal(-1.0, 1.5, N_VAL), "v2": rng.normal(-0.3, 1.5, N_V2)}
    grid = grid or {}
    statuses = statuses or {}
    path = root / name
    (path / "predictions").mkdir(parents=True)
    trial_rows, epoch_rows = [], []
    configs = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())] or [{}]
    for index, (config, seed_value) in enumerate(itertools.product(configs, seeds)):
        trial_id = f"trial_{index:05d}"
        status = statuses.get(index, "ok")
        shift = effects(config) if effects else 0.0
        final, epochs, correct = simulate_trial(
            rng, difficulty, shift + rng.normal(0, ability_std), n_epochs, status
        )
        hyper = {
            "recipe": "A2",
            "model": "test_resnet",
            "epochs": n_epochs,
            "batch_size": 64,
            "lr": 0.005,
            "weight_decay": 0.02,
            "opt": "lamb",
        } | config
        trial_rows.append(
            {
                "trial_id": trial_id,
                "seed": seed_value,
                "model_seed": seed_value,
                "data_seed": seed_value,
                "aug_seed": seed_value,
                "status": status,
                **hyper,
                **final,
                "n_val": N_VAL,
                "n_v2": N_V2,
                "run_time_s": 12.5,
            }
        )
        epoch_rows += [{"trial_id": trial_id, "seed": seed_value, **row} for row in epochs]
        if status == "ok":
            np.savez_compressed(
                path / "predictions" / f"{trial_id}.npz", val_correct=correct["val"], v2_correct=correct["v2"]
            )
    pd.DataFrame(trial_rows).to_parquet(path / "trials.parquet")
    pd.DataFrame(epoch_rows).to_parquet(path / "epochs.parquet")
    meta = {
        "name": name,
        "kind": kind,
        "recipe": "A2",
        "metric": "val_top1",
        "mode": "max",
        "params": list(grid),
        "command": f"rsb-tune {kind} --name {name}",
        "base_config": {"recipe": "A2", "epochs": n_epochs},
        "space": {k: list(v) for k, v in grid.items()} or None,
        "versions": {"python": "3.11", "timm": "1.0.9"},
        "git_commit": None,
        "started_at": started_at,
        "ended_at": "2025-01-01T01:00:00",
        "n_trials": len(trial_rows),
    }
    (path / "study.yaml").write_text(yaml.safe_dump(meta), encoding="utf-8")
    plan = {row["trial_id"]: {**{k: row[k] for k in hyper}, "seed": int(row["seed"])} for row in trial_rows}
    (path / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    return path


GRID = {"lr": [0.005, 0.008], "weight_decay": [0.01, 0.02]}


def grid_effects(config: dict[str, Any]) -> float:
    """The grid's true effect on the logit: lr 0.008 helps much, weight decay 0.02 a little."""
    return 0.6 * (config["lr"] == 0.008) + 0.1 * (config["weight_decay"] == 0.02)
