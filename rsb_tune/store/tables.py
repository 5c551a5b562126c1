"""Tidy result tables from a study's plan and event logs.

``epochs.parquet``: one row per trial and epoch. ``trials.parquet``: one row per finished
trial (status ok / diverged / error) with its seeds, every config key as a column and the final
epoch's metrics. Both are rebuilt from ``events/*.jsonl`` - never appended to - so a retried or
resumed trial that re-reports an epoch never makes a duplicate row (the last report wins).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from analysis import contract as C
from rsb_tune.store.events import read_events, trial_state
from rsb_tune.store.manifest import data_sizes
from rsb_tune.store.backends import replacing
from rsb_tune.store.directory import StudyDir

__all__ = ["build_tables", "write_tables", "write_predictions"]


def _scalar(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v


def build_tables(study: StudyDir):
    """(trials, epochs) DataFrames of a study as it stands."""
    import pandas as pd

    plan = study.plan()
    meta = study.meta()
    trial_rows, epoch_rows, theirs = [], [], {}
    for tid, config in plan.items():
        sizes = data_sizes(meta, config)  # of the trial's own data (a grid may vary the dataset)
        events = read_events(study, tid)
        status, by_epoch, error = trial_state(events)
        extra = C.user_metric_names(by_epoch.values())  # a custom trainer's own metrics
        theirs.update(dict.fromkeys(extra))
        for epoch in sorted(by_epoch):
            ev = by_epoch[epoch]
            epoch_rows.append({"trial_id": tid, "seed": config["seed"], **{k: ev.get(k) for k in C.EPOCH_COLUMNS[2:]}, **{k: ev.get(k, np.nan) for k in extra}})
        if status not in C.FINISHED:
            continue
        last = by_epoch[max(by_epoch)] if by_epoch else {}
        row: dict[str, Any] = {"trial_id": tid, **{k: config[k] for k in C.SEED_COLUMNS}, "status": status}
        row.update({k: _scalar(v) for k, v in config.items() if k not in row})
        row.update({k: last.get(k, np.nan) if status not in (C.ERROR, C.ABANDONED) else np.nan for k in (*C.FINAL_METRICS, *extra)})
        row.update(
            n_val=sizes.get("n_val"),
            n_v2=sizes.get("n_v2"),
            epochs_done=max(by_epoch) if by_epoch else 0,
            run_time_s=float(sum(ev.get("epoch_time_s", 0.0) for ev in by_epoch.values())),
            attempts=1 + sum(1 for ev in events if ev.get("type") == "error" and not ev.get("final")),
            error=(error or {}).get("error") if status == C.ERROR else None,
            pack_id=last.get(C.PACK_ID),
            hostname=last.get("hostname") or (error or {}).get("hostname"),
            node_id=last.get("node_id") or (error or {}).get("node_id"),
            **{k: last.get(k) for k in C.RUNTIME_COLUMNS},
        )
        trial_rows.append(row)
    trials = pd.DataFrame(trial_rows)
    epochs = pd.DataFrame(epoch_rows, columns=[*C.EPOCH_COLUMNS, *(k for k in theirs if k not in C.EPOCH_COLUMNS)])
    if not trials.empty:
        trials = trials.sort_values("trial_id", kind="stable").reset_index(drop=True)
    else:
        trials = pd.DataFrame(columns=["trial_id", *C.SEED_COLUMNS, "status", *C.FINAL_METRICS])
    metric = meta.get("metric")
    if isinstance(metric, str) and metric not in trials.columns:  # a custom trainer's metric before any trial reported it
        trials[metric] = np.nan
    epochs = epochs.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    for col in ("epoch",):
        epochs[col] = epochs[col].astype("int64")
    return trials, epochs


def _atomic_parquet(df, path: Path) -> None:
    with replacing(path) as tmp:  # a full disk: the old table stays whole, no half-written file stays
        df.to_parquet(tmp, index=False)


def write_tables(study: StudyDir):
    """Rebuild and atomically replace ``trials.parquet`` and ``epochs.parquet``."""
    from rsb_tune._log import timed

    with timed("write_tables"):
        trials, epochs = build_tables(study)
        _atomic_parquet(trials, study.trials_path)
        _atomic_parquet(epochs, study.epochs_path)
    return trials, epochs


def write_predictions(study: StudyDir, trial_id: str, result: Mapping[str, Any]) -> None:
    """Save the final epoch's per-example correctness (val, v2) as ``predictions/<id>.npz``."""
    sizes = data_sizes(study.meta(), study.plan()[trial_id])
    arrays = {}
    for split in ("val", "v2"):
        packed = result.get(f"{split}_correct")
        if packed:
            arrays[f"{split}_correct"] = C.unpack_correct(packed, int(sizes[f"n_{split}"]))
    if arrays:
        with replacing(study.predictions_dir / f"{trial_id}.npz") as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
