"""The framework-free trial on a real tiny timm model (no Ray)."""

import math

import numpy as np
import pytest

from rsb_tune.training.trial import build_sampler, train
from tests.conftest import make_config

EPOCH_KEYS = {"epoch", "train_loss", "lr", "val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss", "epoch_time_s", "images_per_s"}
METRICS = ("train_loss", "lr", "val_top1", "val_top5", "val_loss", "v2_top1", "v2_top5", "v2_loss")


def run(config, data, resume=None):
    """Run a trial; checkpoints are serialised inside report(), as the Ray adapter does
    (the dict handed to report() references live tensors)."""
    import io

    import torch

    reports, checkpoints = [], []

    def report(metrics, *, checkpoint=None):
        reports.append(metrics)
        if checkpoint is not None:
            buf = io.BytesIO()
            torch.save(checkpoint, buf)
            buf.seek(0)
            checkpoint = torch.load(buf, weights_only=False)
        checkpoints.append(checkpoint)

    train(config, report, data, resume=resume)
    return reports, checkpoints


@pytest.fixture(scope="module")
def rsb_run(digits):
    """A2 ingredients: BCE + mixup/cutmix + repeated augmentation + RandAugment + drop path."""
    cfg = make_config("A2", epochs=2, seed=7)
    assert cfg["loss"] == "bce" and cfg["repeated_aug"] == 3 and cfg["mixup_alpha"] > 0 and cfg["drop_path"] > 0
    return cfg, run(cfg, digits)


def test_reports_every_epoch_with_all_metrics(rsb_run):
    cfg, (reports, checkpoints) = rsb_run
    assert [r["epoch"] for r in reports] == [1, 2]
    for r in reports:
        assert EPOCH_KEYS <= set(r)
        assert 0 <= r["val_top1"] <= r["val_top5"] <= 100 and 0 <= r["v2_top1"] <= 100
        assert math.isfinite(r["train_loss"]) and r["images_per_s"] > 0
    assert [r["status"] for r in reports] == ["running", "ok"]
    assert all(c is not None for c in checkpoints)  # checkpoint_every=1
    assert "val_correct" in reports[-1] and "val_correct" not in reports[0]
    assert reports[-1]["runtime_device"] == "cpu" and reports[-1]["runtime_threads"] == 1


def test_learning_happens(digits):
    cfg = make_config("A3", epochs=4, seed=0)
    reports, _ = run(cfg, digits)
    assert reports[-1]["val_top1"] > 30  # chance is 10 %


def test_bit_identical_rerun(digits, rsb_run):
    cfg, (reports, _) = rsb_run
    again, _ = run(cfg, digits)
    for a, b in zip(reports, again):
        assert [a[k] for k in METRICS] == [b[k] for k in METRICS]


def test_bf16_rerun_is_bit_identical_and_amp_auto_follows_the_cpu(digits):
    """bf16 autocast reruns bit-identically on one machine; ``amp: auto`` on a CPU is bf16 where
    it has bf16 matrix units and fp32 elsewhere, ``amp: bf16`` and ``off`` are honoured."""

    from rsb_tune.training.trial import TrialRuntime, cpu_bf16_units

    cfg = make_config("A2", epochs=1, seed=5, amp="bf16")
    first, _ = run(cfg, digits)
    again, _ = run(cfg, digits)
    assert [first[0][k] for k in METRICS] == [again[0][k] for k in METRICS]
    assert TrialRuntime(make_config("A2", device="cpu")).amp == ("bf16" if cpu_bf16_units() else "off")
    assert TrialRuntime(make_config("A2", device="cpu", amp="bf16")).amp == "bf16"
    assert TrialRuntime(make_config("A2", device="cpu", amp="off")).amp == "off"


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_resume_from_checkpoint_is_bit_identical(digits, amp):
    """In float32 and under bf16 autocast (``amp: auto`` on a CPU with bf16 matrix units)."""
    cfg = make_config("A2", epochs=3, seed=3, amp=amp)
    full, ckpts = run(cfg, digits)
    assert full[-1]["runtime_amp"] == amp
    resumed, _ = run(cfg, digits, resume=ckpts[0])
    assert [r["epoch"] for r in resumed] == [2, 3]
    for a, b in zip(full[1:], resumed):
        assert [a[k] for k in METRICS] == [b[k] for k in METRICS]


def test_seeds_change_results_and_each_stream_alone(digits):
    base = make_config("A3", epochs=1, seed=1)
    ref, _ = run(base, digits)
    for stream in ("model_seed", "data_seed", "aug_seed"):
        other, _ = run({**base, stream: base[stream] + 1}, digits)
        assert other[0]["train_loss"] != ref[0]["train_loss"], stream


def test_data_order_depends_on_the_data_seed(digits):
    from rsb_tune.data.registry import SplitDataset

    ds = SplitDataset(digits.train, None)
    for repeated in (3, 1):
        a = build_sampler(ds, make_config(seed=0, repeated_aug=repeated))
        b = build_sampler(ds, make_config(seed=1, repeated_aug=repeated))
        a.set_epoch(0), b.set_epoch(0)
        assert list(a) != list(b)
        first = list(a)
        a.set_epoch(1)
        assert list(a) != first  # and on the epoch
    a.set_epoch(0)
    assert sorted(a) == list(range(len(ds)))  # without RA every sample once


def test_repeated_augmentation_repeats_samples(digits):
    from rsb_tune.data.registry import SplitDataset

    s = build_sampler(SplitDataset(digits.train, None), make_config(repeated_aug=3))
    s.set_epoch(0)
    idx = list(s)
    assert np.bincount(idx).max() == 3


@pytest.mark.parametrize("loss,mix", [("ce", 0.0), ("ce", 0.2), ("bce", 0.0)])
def test_other_losses_and_no_mixup(digits, loss, mix):
    cfg = make_config("A2", epochs=1, loss=loss, mixup_alpha=mix, cutmix_alpha=0.0, smoothing=0.1, repeated_aug=1, auto_augment=None)
    reports, _ = run(cfg, digits)
    assert math.isfinite(reports[0]["train_loss"])


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_other_optimizers(digits, opt):
    reports, _ = run(make_config("A3", epochs=1, opt=opt), digits)
    assert math.isfinite(reports[0]["train_loss"])


def test_diverging_trial_stops_with_status_diverged(digits):
    cfg = make_config("A3", epochs=3, opt="sgd", lr=1e12, momentum=0.99, warmup_epochs=0)
    reports, ckpts = run(cfg, digits)
    assert reports[-1]["status"] == "diverged"
    assert len(reports) < 3 or not math.isfinite(reports[-1]["train_loss"])
    assert ckpts[-1] is None


_KERNEL_STATS = """
import json, sys
import torch
from rsb_tune.augment import kernels as augment_kernels
from rsb_tune.training import optim_kernels
from rsb_tune.data.registry import load_splits
from rsb_tune.training.trial import build_trial, warm_cpu_kernels
from tests.conftest import make_config

config, data = make_config("A2", epochs=1), load_splits("digits")
if sys.argv[1] == "warm":
    warm_cpu_kernels(config, data)
else:  # one training step of a real trial
    parts = build_trial(config, data)
    x, y = next(iter(parts.loader))
    x, y = parts.mixup(parts.normalize(x), y)
    parts.criterion(parts.model(x), y).backward()
    parts.optimizer.step()
    assert parts.runtime.augment == "batch" and parts.optimizer._flat is not None
stats = [f.stats for f in (augment_kernels.augment_batch, optim_kernels.lamb_update, optim_kernels.add_scaled)]
print(json.dumps({"hits": sum(sum(s.cache_hits.values()) for s in stats), "misses": sum(sum(s.cache_misses.values()) for s in stats)}))
"""


def test_warm_cpu_kernels_leaves_a_trial_nothing_to_compile(tmp_path):
    """The driver's warm-up (rsb_tune.runner.ray_executor calls it before the trials) fills numba's
    disk cache, so a trial process on the same machine loads every compiled loop it runs and
    compiles none (compiling costs a trial ~15 s and extra peak memory)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # an empty cache
    root = Path(__file__).resolve().parent.parent

    def run(role):
        out = subprocess.run([sys.executable, "-c", _KERNEL_STATS, role], cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    warm = run("warm")
    assert warm["misses"] >= 3  # the empty cache: the warm-up compiled the three loops
    trial = run("trial")
    assert trial == {"hits": 3, "misses": 0}
