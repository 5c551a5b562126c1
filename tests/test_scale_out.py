"""Scale-out: a real multi-node Ray cluster, Optuna search with resume, ASHA, tracking."""

from __future__ import annotations

import json
import os
import signal

import pandas as pd
import pytest

from tests.conftest import REPO, assert_user_error, run_cli
from tests.conftest import events, start_cli
from tests.test_resilience import wait_for

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("kind", ["shared-dir", "s3"])
def test_seed_study_spreads_over_cluster_nodes(tmp_path, kind, request, monkeypatch):
    from ray.cluster_utils import Cluster

    from rsb_tune.runner.lifecycle import Checkpoints
    from rsb_tune.store.directory import StudyDir

    if kind == "s3":  # the study lives in the store (the simulated nodes still share this machine's disk)
        monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(tmp_path / "cache"))
        storage = request.getfixturevalue("s3_server")("cluster")
    else:
        storage = str(tmp_path / "shared")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        proc = run_cli("seeds", "--n", "4", "--recipe", "A3", "--epochs", "2", "--address", cluster.address, "--storage", storage, "--name", "c", "--quiet")
        assert proc.returncode == 0, proc.stderr[-3000:]
        study = StudyDir(storage, "c").require()
        trials = pd.read_parquet(study.trials_path)
        assert Checkpoints(study).runs() == ["run-01"]  # written by the trials' nodes straight to the storage
        assert "run-01/t0000/checkpoint_000001" in Checkpoints(study).dirs_with()
        assert len(trials) == 4 and (trials.status == "ok").all()
        worker_ids = {n.node_id for n in nodes}
        assert set(trials.node_id) <= worker_ids and len(set(trials.node_id)) == 2  # the head has no CPUs
        assert trials.hostname.notna().all()
    finally:
        cluster.shutdown()


def _optuna_trials(study_dir):
    import optuna

    storage = optuna.storages.RDBStorage(f"sqlite:///{study_dir / 'optuna.db'}")
    return optuna.load_study(study_name=study_dir.name, storage=storage).trials


def test_optuna_search_interrupted_and_resumed_keeps_sampler_history(tmp_path):
    import optuna

    space = tmp_path / "o.yaml"
    space.write_text(
        "recipe: A3\nsearch: optuna\nnum_samples: 4\nseeds: [0]\n"
        "params:\n  lr: {loguniform: [1.0e-3, 3.0e-2]}\n  opt: {choice: [lamb, adamw]}\n"
    )
    args = ["grid", "--space", str(space), "--epochs", "2", "--max-concurrent", "1", "--storage", str(tmp_path), "--name", "o", "--quiet"]
    proc = start_cli(*args)
    study = tmp_path / "o"
    wait_for(lambda: sum(any(r.get("status") == "ok" for r in rows) for rows in events(study).values()) >= 2, what="two finished search trials")
    os.killpg(proc.pid, signal.SIGKILL)  # possibly before Optuna was told of the second
    proc.wait()
    before = [t for t in _optuna_trials(study) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(before) >= 1
    res = run_cli("resume", "o", "--storage", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    after = _optuna_trials(study)
    complete = [t for t in after if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4  # a point that finished as the driver died is in the history too
    # the resumed search continued the same Optuna study: the old trials come first, numbered on
    assert [t.number for t in complete[: len(before)]] == [t.number for t in before]
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in after)
    trials = pd.read_parquet(study / "trials.parquet")
    assert (trials.status == "ok").sum() == 4 and set(trials.status) <= {"ok", "abandoned"}
    plan = json.loads((study / "plan.json").read_text())
    assert set(trials.trial_id) == set(plan)
    for row in trials[trials.status == "ok"].itertuples():
        assert plan[row.trial_id]["lr"] == row.lr and 1e-3 <= row.lr <= 3e-2 and row.opt in ("lamb", "adamw")
        assert plan[row.trial_id]["lr_resolved"] == row.lr_resolved


def test_asha_stops_poor_trials_and_warns(tmp_path):
    space = tmp_path / "a.yaml"
    space.write_text("recipe: A3\nseeds: [0]\nscheduler: asha\ngrace_period: 1\nreduction_factor: 2\ngrid:\n  lr: [5.0e-3, 1.0e-7, 5.0e-3, 1.0e-7]\n  warmup_epochs: [0]\n")
    proc = run_cli("grid", "--space", str(space), "--epochs", "3", "--max-concurrent", "1", "--storage", str(tmp_path), "--name", "a", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final checkpoint only" in proc.stderr
    trials = pd.read_parquet(tmp_path / "a" / "trials.parquet")
    assert set(trials.status) == {"ok", "stopped"}
    stopped = trials[trials.status == "stopped"]
    assert (stopped.epochs_done < 3).all() and (stopped.lr == 1e-7).all()


def test_tracking_mlflow_and_tensorboard(tmp_path):
    pytest.importorskip("mlflow")
    proc = run_cli("seeds", "--n", "2", "--recipe", "A3", "--epochs", "2", "--tracking", "mlflow", "--tracking", "tensorboard", "--storage", str(tmp_path), "--name", "t", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 't' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("t")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    assert all("val_top1" in r.data.metrics for r in runs)
    assert len(client.get_metric_history(runs[0].info.run_id, "val_top1")) == 2
    assert list((tmp_path / "t" / "ray").rglob("events.out.tfevents*"))


def test_missing_tracker_is_a_clear_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed")
    proc = run_cli("seeds", "--n", "1", "--tracking", "wandb", "--storage", str(tmp_path / "s"))
    assert_user_error(proc, "pip install 'rsb-tune[wandb]'")
    assert not (tmp_path / "s").exists()


def test_shipped_search_examples_dry_run():
    for name in ("optuna_lamb", "asha_lr"):
        proc = run_cli("grid", "--space", str(REPO / "search_spaces" / f"{name}.yaml"), "--dry-run")
        assert proc.returncode == 0, proc.stderr


def test_two_worker_gloo_ddp_trial_matches_single_worker(tmp_path, digits):
    from rsb_tune.training.trial import train

    proc = run_cli("seeds", "--n", "1", "--recipe", "A2", "--epochs", "2", "--workers-per-trial", "2", "--storage", str(tmp_path), "--name", "d", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = tmp_path / "d"
    trials = pd.read_parquet(study / "trials.parquet")
    row = trials.iloc[0]
    assert row.status == "ok" and row.workers_per_trial == 2 and row.runtime_world_size == 2
    assert row.runtime_global_batch == row.batch_size == 64  # 2 ranks x 32: the global batch is kept
    ddp = pd.read_parquet(study / "epochs.parquet")
    cfg = dict(json.loads((study / "plan.json").read_text())["t0000"], workers_per_trial=1)
    single = []
    train(cfg, lambda m, checkpoint=None: single.append(m), digits)
    for m in single:
        got = ddp[ddp.epoch == m["epoch"]].iloc[0]
        assert got.train_loss == pytest.approx(m["train_loss"], rel=0.1)  # same recipe and seed, other sample split
        assert got.lr == pytest.approx(m["lr"])  # same schedule: same number of updates per epoch
    # the checkpoint was saved by Ray Train and recorded for resume
    assert any(r.get("type") == "checkpoint" for r in events(study)["t0000"])
