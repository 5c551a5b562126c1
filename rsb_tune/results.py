"""Tidy result tables from a study's plan and event logs.

``epochs.parquet``: one row per trial and epoch. ``trials.parquet``: one row per finished
trial (status ok / diverged / error) with its seeds, every config key as a column and the final
epoch's metrics. Both are rebuilt from ``events/*.jsonl`` - never appended to - so a retried or
resumed trial that re-reports an epoch never makes a duplicate row (the last report wins).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from rsb_tune.study import Study

__all__ = ["pack_correct", "unpack_correct", "FINISHED", "KEPT", "EPOCH_COLUMNS", "FINAL_METRICS", "trial_state", "build_tables", "write_tables", "write_predictions"]

EPOCH_COLUMNS = (
    "trial_id", "seed", "epoch", "train_loss", "lr", "val_top1", "val_top5", "val_loss",
    "v2_top1", "v2_top5", "v2_loss", "epoch_time_s", "images_per_s",
)  # fmt: skip
FINAL_METRICS = ("val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss")
SEED_COLUMNS = ("seed", "model_seed", "data_seed", "aug_seed")
FINISHED = ("ok", "diverged", "error", "stopped", "abandoned")
KEPT = ("ok", "diverged", "stopped", "abandoned")  # ended for good: a resumed study never re-runs them


def pack_correct(correct: np.ndarray) -> str:
    """Per-example correctness as a compact base64 string (carried by the final report)."""
    import base64

    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode("ascii")


def unpack_correct(packed: str, n: int) -> np.ndarray:
    import base64

    return np.unpackbits(np.frombuffer(base64.b64decode(packed), dtype=np.uint8))[:n].astype(bool)


def trial_state(events: list[Mapping[str, Any]]) -> tuple[str, dict[int, Mapping[str, Any]], Mapping[str, Any] | None]:
    """(status, {epoch: last result of that epoch}, last error event) of one trial's log.

    status: ``pending`` (no event), ``running``, ``ok``, ``diverged``, ``error`` (gave up),
    ``stopped`` (early-stopped by ASHA) or ``abandoned`` (a search trial whose driver died; the
    resumed search samples new points instead).
    """
    by_epoch: dict[int, Mapping[str, Any]] = {}
    status, error = ("pending" if not events else "running"), None
    for ev in events:
        if ev.get("type") == "result":
            by_epoch[int(ev["epoch"])] = ev
            status = ev.get("status", "running")
            if status == "running":
                error = None
        elif ev.get("type") == "error":
            error = ev
            status = "error" if ev.get("final") else "running"
        elif ev.get("type") == "restart":  # a resumed study re-runs an errored trial
            status, error = "running", None
        elif ev.get("type") in ("stopped", "abandoned"):
            status = ev["type"]
    return status, by_epoch, error


def _scalar(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v


def build_tables(study: Study):
    """(trials, epochs) DataFrames of a study as it stands."""
    import pandas as pd

    plan = study.plan()
    meta = study.meta()
    sizes = meta.get("data_sizes", {})
    trial_rows, epoch_rows = [], []
    for tid, config in plan.items():
        events = study.events(tid)
        status, by_epoch, error = trial_state(events)
        for epoch in sorted(by_epoch):
            ev = by_epoch[epoch]
            epoch_rows.append({"trial_id": tid, "seed": config["seed"], **{k: ev.get(k) for k in EPOCH_COLUMNS[2:]}})
        if status not in FINISHED:
            continue
        last = by_epoch[max(by_epoch)] if by_epoch else {}
        row: dict[str, Any] = {"trial_id": tid, **{k: config[k] for k in SEED_COLUMNS}, "status": status}
        row.update({k: _scalar(v) for k, v in config.items() if k not in row})
        row.update({k: last.get(k, np.nan) if status not in ("error", "abandoned") else np.nan for k in FINAL_METRICS})
        row.update(
            n_val=sizes.get("n_val"),
            n_v2=sizes.get("n_v2"),
            epochs_done=max(by_epoch) if by_epoch else 0,
            run_time_s=float(sum(ev.get("epoch_time_s", 0.0) for ev in by_epoch.values())),
            attempts=1 + sum(1 for ev in events if ev.get("type") == "error" and not ev.get("final")),
            error=(error or {}).get("error") if status == "error" else None,
            hostname=last.get("hostname") or (error or {}).get("hostname"),
            node_id=last.get("node_id") or (error or {}).get("node_id"),
            **{k: last.get(k) for k in ("runtime_device", "runtime_amp", "runtime_channels_last", "runtime_threads", "runtime_world_size", "runtime_global_batch")},
        )
        trial_rows.append(row)
    trials = pd.DataFrame(trial_rows)
    epochs = pd.DataFrame(epoch_rows, columns=list(EPOCH_COLUMNS))
    if not trials.empty:
        trials = trials.sort_values("trial_id", kind="stable").reset_index(drop=True)
    else:
        trials = pd.DataFrame(columns=["trial_id", *SEED_COLUMNS, "status", *FINAL_METRICS])
    epochs = epochs.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    for col in ("epoch",):
        epochs[col] = epochs[col].astype("int64")
    return trials, epochs


def _atomic_parquet(df, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def write_tables(study: Study):
    """Rebuild and atomically replace ``trials.parquet`` and ``epochs.parquet``."""
    trials, epochs = build_tables(study)
    _atomic_parquet(trials, study.trials_path)
    _atomic_parquet(epochs, study.epochs_path)
    return trials, epochs


def write_predictions(study: Study, trial_id: str, result: Mapping[str, Any]) -> None:
    """Save the final epoch's per-example correctness (val, v2) as ``predictions/<id>.npz``."""
    sizes = study.meta().get("data_sizes", {})
    arrays = {}
    for split in ("val", "v2"):
        packed = result.get(f"{split}_correct")
        if packed:
            arrays[f"{split}_correct"] = unpack_correct(packed, int(sizes[f"n_{split}"]))
    if arrays:
        tmp = study.predictions_dir / f".{trial_id}.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, study.predictions_dir / f"{trial_id}.npz")
