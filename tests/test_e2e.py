"""End-to-end: the real CLI, a real local Ray, real training; tables checked row by row."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from analysis.contract import EPOCH_COLUMNS
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.e2e
TRIAL_COLUMNS = {
    "trial_id", "seed", "model_seed", "data_seed", "aug_seed", "status", "val_top1", "val_top5", "val_loss",
    "v2_top1", "v2_top5", "v2_loss", "n_val", "n_v2", "run_time_s", "lr", "lr_resolved", "weight_decay", "opt",
}  # fmt: skip


def check_tables(study_dir, n_trials, epochs):
    trials = pd.read_parquet(study_dir / "trials.parquet")
    ep = pd.read_parquet(study_dir / "epochs.parquet")
    plan = json.loads((study_dir / "plan.json").read_text())
    assert TRIAL_COLUMNS <= set(trials.columns)
    assert list(ep.columns) == list(EPOCH_COLUMNS)
    assert len(trials) == n_trials and trials["trial_id"].is_unique
    assert sorted(trials["trial_id"]) == sorted(plan)
    assert (trials["status"] == "ok").all()
    assert len(ep) == n_trials * epochs and not ep.duplicated(["trial_id", "epoch"]).any()
    for row in trials.itertuples():
        cfg = plan[row.trial_id]
        assert (row.seed, row.model_seed, row.data_seed, row.aug_seed) == (cfg["seed"], cfg["model_seed"], cfg["data_seed"], cfg["aug_seed"])
        mine = ep[ep.trial_id == row.trial_id].sort_values("epoch")
        assert list(mine["epoch"]) == list(range(1, epochs + 1))
        last = mine.iloc[-1]
        for m in ("val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss"):
            assert getattr(row, m) == last[m]
        assert row.n_val == 359 and row.n_v2 == 360
        pred = np.load(study_dir / "predictions" / f"{row.trial_id}.npz")
        assert pred["val_correct"].shape == (359,)
        assert pred["val_correct"].mean() * 100 == pytest.approx(row.val_top1, abs=1e-4)
    return trials, ep, plan


def test_seed_study_end_to_end(real_studies, digits):
    tmp_path, procs = real_studies
    proc = procs["s"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "3 ok, 0 diverged, 0 error" in proc.stderr
    study = tmp_path / "s"
    trials, ep, plan = check_tables(study, 3, 2)
    assert sorted(trials["seed"]) == [0, 1, 2]
    meta = yaml.safe_load((study / "study.yaml").read_text())
    assert meta["kind"] == "seeds" and meta["recipe"] == "A2" and meta["ended_at"]
    assert meta["base_config"]["lr_resolved"] and "torch" in meta["versions"]
    # seeds differ -> results differ
    assert trials["val_loss"].nunique() == 3
    # inside Ray == outside Ray, bit for bit (same resolved config, one thread)
    from rsb_tune.training.trial import train

    reports = []
    train(plan["t0001"], lambda m, checkpoint=None: reports.append(m), digits)
    mine = ep[ep.trial_id == "t0001"]
    for r in reports:
        row = mine[mine.epoch == r["epoch"]].iloc[0]
        assert [row[k] for k in ("train_loss", "val_top1", "val_loss", "v2_loss")] == [r[k] for k in ("train_loss", "val_top1", "val_loss", "v2_loss")]
    status = run_cli("status", "s", "--storage", str(tmp_path))
    assert status.returncode == 0 and "3 ok" in status.stdout and "val_top1: mean" in status.stdout
    # the same command again resumes (nothing to do) and does not overwrite
    again = run_cli("seeds", "--n", "3", "--recipe", "A2", "--epochs", "2", "--storage", str(tmp_path), "--name", "s")
    assert again.returncode == 0 and "resuming" in again.stderr
    check_tables(study, 3, 2)
    other = run_cli("seeds", "--n", "4", "--recipe", "A2", "--epochs", "2", "--storage", str(tmp_path), "--name", "s")
    assert other.returncode == 2 and "rsb-tune resume s" in other.stderr


def test_grid_end_to_end(real_studies):
    tmp_path, procs = real_studies
    proc = procs["g"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials, ep, plan = check_tables(tmp_path / "g", 4, 2)
    assert set(zip(trials["lr"], trials["weight_decay"])) == {(a, b) for a in (2e-3, 8e-3) for b in (0.01, 0.05)}
    meta = yaml.safe_load((tmp_path / "g" / "study.yaml").read_text())
    assert meta["params"] == ["lr", "weight_decay"] and meta["space"]["grid"]["lr"] == [2e-3, 8e-3]
