"""A trained trial re-scored: its final weights evaluated at other settings and on other test
sets, framework-free (no Ray, no study files).

``evaluate_weights(config, weights, test_sets, settings)`` builds the trial's model as the trial
did (:func:`rsb_tune.training.trial.build_model`, on the trial's runtime: device, precision,
memory format, torch threads), loads ``weights`` and scores it on each test set at each
:class:`Setting` (test resolution and centre-crop ratio) with the trial's own evaluator
(:class:`rsb_tune.training.trial._Evaluator`). At the trial's own setting, on its own threads
and device, the score is the trial's recorded one, bit for bit: the same transform, batches and
forwards. A :class:`TestSet` with ``label_sets`` (ImageNet-ReaL's multi-label form) counts a
prediction correct when it is in the image's set; images with an empty set are left out, as
ReaL does.

:func:`weights_of` takes one trial's weights out of a final checkpoint (a pack's checkpoint
holds K stacked models; :mod:`rsb_tune.training.checkpoint`'s, which a fine-tune's
:func:`rsb_tune.training.trial.initial_model` uses too); :func:`model_with_weights` builds a
config's model and loads them, strictly.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

import numpy as np

from rsb_tune.training.checkpoint import weights_of

__all__ = ["Setting", "TestSet", "weights_of", "model_with_weights", "evaluate_weights", "EVAL_METRICS"]

EVAL_METRICS = ("top1", "top5", "loss")


@dataclasses.dataclass(frozen=True, order=True)
class Setting:
    """One evaluation setting: the test resolution and the centre-crop ratio (timm's eval
    transform: resize to ``test_img_size / crop_pct``, centre crop ``test_img_size``)."""

    test_img_size: int
    crop_pct: float


@dataclasses.dataclass(frozen=True)
class TestSet:
    """A test set: its images and labels (a :class:`rsb_tune.data.types.Split`), where it came
    from, and for a multi-label test set each image's set of correct labels."""

    name: str
    split: Any
    source: str = ""
    label_sets: tuple[frozenset, ...] | None = None

    __test__ = False  # not a pytest class despite the name


def model_with_weights(config: Mapping[str, Any], num_classes: int, weights: Mapping[str, Any], runtime):
    """The model of ``config`` with ``weights`` loaded (strictly), on ``runtime``'s device and
    memory format."""
    import torch

    from rsb_tune.training.trial import build_model

    model = build_model(config, num_classes)
    model.load_state_dict(weights)
    model = model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


def _score_sets(logits, label_sets: Sequence[frozenset]) -> tuple[dict[str, float], np.ndarray]:
    """({top1, top5, loss NaN}, correctness) against label sets; empty sets are left out."""
    keep = np.array([bool(s) for s in label_sets])
    out = logits[keep]
    sets = [s for s in label_sets if s]
    k = min(5, out.shape[1])
    top = out.topk(k, dim=1).indices.numpy()
    correct = np.array([top[i, 0] in s for i, s in enumerate(sets)], dtype=bool)
    top5 = np.array([any(int(c) in s for c in top[i]) for i, s in enumerate(sets)], dtype=bool)
    return {"top1": 100.0 * float(correct.mean()), "top5": 100.0 * float(top5.mean()), "loss": float("nan")}, correct


_CACHE: "dict[tuple, Any]" = {}
CACHE_BYTES = 512 << 20  # transformed test sets kept per process, for the next trial's job


def _evaluator(test_set: TestSet, transform, runtime, batch_size: int, workers: int):
    """The trial's evaluator of ``test_set`` under ``transform``. A decoded test set's
    transformed images are the same for every trial of a study (the eval transform is
    deterministic), so they are kept for the next job in this process (a worker runs many), up
    to :data:`CACHE_BYTES`; the key is the set's content (its name, files, labels), the
    transform's description and the device's memory format."""
    import hashlib

    from rsb_tune.training.trial import _Evaluator

    split = test_set.split
    if not split.decoded:
        return _Evaluator(split, transform, runtime, batch_size, workers)
    labels = hashlib.sha1(np.ascontiguousarray(split.labels).tobytes()).hexdigest()
    key = (test_set.name, test_set.source, len(split), labels, repr(transform), str(runtime.device), runtime.channels_last, batch_size)
    if key not in _CACHE:
        evaluator = _Evaluator(split, transform, runtime, batch_size, workers)
        size = evaluator.images.element_size() * evaluator.images.nelement()
        while _CACHE and sum(e.images.element_size() * e.images.nelement() for e in _CACHE.values()) + size > CACHE_BYTES:
            _CACHE.pop(next(iter(_CACHE)))  # the oldest first
        if size > CACHE_BYTES:
            return evaluator
        _CACHE[key] = evaluator
    evaluator = _CACHE[key]
    evaluator.runtime = runtime  # this trial's precision (autocast); device and format are in the key
    return evaluator


def evaluate_weights(config: Mapping[str, Any], weights: Mapping[str, Any], num_classes: int, test_sets: Sequence[TestSet], settings: Sequence[tuple[str, Setting]]) -> list[dict[str, Any]]:
    """Score ``weights`` (of the trial of ``config``) on each ``(test set name, setting)`` of
    ``settings``. One dict per pair: ``test_set``, ``test_img_size``, ``crop_pct``, ``top1``,
    ``top5``, ``loss``, ``n_examples``, ``correct`` (per-example correctness, a bool array),
    ``eval_time_s`` and ``runtime_device``. Sets this process's torch threads to
    ``config["threads"]`` (the trial's: numerics depend on them) and restores them after."""
    import torch

    from rsb_tune.data.registry import build_transforms
    from rsb_tune.training.trial import TrialRuntime

    cfg = {**config, "workers_per_trial": 1}
    threads = torch.get_num_threads()
    try:
        runtime = TrialRuntime(cfg)
        torch.set_num_threads(runtime.threads)
        model = model_with_weights(cfg, num_classes, weights, runtime)
        by_name = {t.name: t for t in test_sets}
        rows = []
        for setting in sorted({s for _, s in settings}):
            _, transform = build_transforms({**cfg, "test_img_size": setting.test_img_size, "crop_pct": setting.crop_pct})
            for name in [n for n, s in settings if s == setting]:
                test_set = by_name[name]
                t0 = time.perf_counter()
                evaluator = _evaluator(test_set, transform, runtime, cfg["eval_batch_size"], cfg["workers"])
                if test_set.label_sets is None:
                    metrics, correct = evaluator(model)
                else:
                    model.eval()
                    metrics, correct = _score_sets(evaluator.logits(model), test_set.label_sets)
                rows.append(
                    {"test_set": name, "test_img_size": setting.test_img_size, "crop_pct": setting.crop_pct, **metrics,
                     "n_examples": int(len(correct)), "correct": np.asarray(correct, dtype=bool),
                     "eval_time_s": time.perf_counter() - t0, "runtime_device": runtime.device.type}
                )  # fmt: skip
        return rows
    finally:
        torch.set_num_threads(threads)
