"""A process that has already run other trials gives the same metrics, bit for bit, as a fresh
process: what makes Ray Tune's actor reuse (``reuse_actors=True``) safe for seed studies.

Every piece of process-wide state a trial touches - the torch, numpy and python RNGs, torch's
thread count, the dataset object shared through Ray's object store - must be reset or left
untouched by the trial, so that the trials before it on the same actor do not leak into it.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, make_config, run_cli

METRICS = ("train_loss", "lr", "val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss")

_FRESH = r"""
import json, sys
from rsb_tune.data.registry import load_splits
from rsb_tune.training.trial import train
configs = json.load(open(sys.argv[1]))
data = load_splits("digits")
out = {}
for tid, cfg in configs.items():
    rows = []
    train(cfg, lambda m, checkpoint=None: rows.append(m), data)
    out[tid] = [{k: r[k] for k in sys.argv[3].split(",")} for r in rows]
json.dump(out, open(sys.argv[2], "w"))
"""


def fresh_process_metrics(configs: dict, tmp_path) -> dict:
    """Per-epoch metrics of each config, each run by ``train`` in a new Python process."""
    out = {}
    for tid, cfg in configs.items():
        cfg_path, out_path = tmp_path / f"{tid}.json", tmp_path / f"{tid}.out.json"
        cfg_path.write_text(json.dumps({tid: cfg}))
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.run([sys.executable, "-c", _FRESH, str(cfg_path), str(out_path), ",".join(METRICS)], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out.update(json.loads(out_path.read_text()))
    return out


def in_process_metrics(cfg, data) -> list[dict]:
    from rsb_tune.training.trial import train

    rows = []
    train(cfg, lambda m, checkpoint=None: rows.append(m), data)
    return [{k: r[k] for k in METRICS} for r in rows]


def test_trial_after_other_trials_in_one_process_matches_a_fresh_process(digits, tmp_path):
    target = make_config("A2", epochs=2, seed=11)
    # A different trial first, changing every piece of process state it can: another recipe,
    # model, loss, threads and seeds, mixup off, no repeated augmentation, and one that diverges.
    other = make_config("A3", epochs=1, seed=5, threads=2, loss="ce", mixup_alpha=0.0, cutmix_alpha=0.0, model="resnet10t", model_kwargs={})
    diverging = make_config("A3", epochs=2, seed=6, opt="sgd", lr=1e12, momentum=0.99, warmup_epochs=0)
    fresh = fresh_process_metrics({"target": target}, tmp_path)["target"]
    assert len(fresh) == 2 and all(math.isfinite(r["train_loss"]) for r in fresh)

    in_process_metrics(other, digits)
    first = in_process_metrics(target, digits)
    in_process_metrics(diverging, digits)
    second = in_process_metrics(target, digits)
    assert first == fresh  # exact float equality, every metric of every epoch
    assert second == fresh


@pytest.mark.e2e
def test_reused_ray_actor_matches_fresh_processes(tmp_path):
    """Through the CLI and Ray with one trial at a time, so trials 2 and 3 run on the actor
    that ran trial 1: each trial's per-epoch metrics equal a fresh process's, bit for bit."""
    import pandas as pd

    proc = run_cli("seeds", "--n", "3", "--recipe", "A2", "--epochs", "2", "--max-concurrent", "1", "--storage", str(tmp_path), "--name", "r", "--quiet", "--executor", "ray")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = tmp_path / "r"
    plan = json.loads((study / "plan.json").read_text())
    epochs = pd.read_parquet(study / "epochs.parquet")
    pids = set()
    for tid in plan:
        events = [json.loads(line) for line in (study / "events" / f"{tid}.jsonl").read_text().splitlines()]
        pids |= {e["pid"] for e in events if e.get("type") == "result" and "pid" in e}
    if pids:  # results carry the actor's pid: one process ran all three trials
        assert len(pids) == 1, pids
    fresh = fresh_process_metrics(plan, tmp_path)
    for tid in plan:
        mine = epochs[epochs.trial_id == tid].sort_values("epoch")
        got = [{k: row[k] for k in METRICS} for _, row in mine.iterrows()]
        assert got == fresh[tid], tid
