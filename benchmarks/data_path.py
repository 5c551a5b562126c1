"""Options for the per-sample augmentation of the digits default, measured side by side.

The recipe's training transform (timm ``create_transform``: random-resized crop, scale
(0.35, 1), bicubic; RandAugment ``rand-m7-mstd0.5-inc1``; no flip) costs, per sample:

- ``pil`` (today): the trial's own pipeline, ``SplitDataset`` over the cached PIL images with
  the timm transform whose ToTensor + Normalize tail is deferred to the batch
  (``rsb_tune.data.registry.defer_normalize``), split into its steps;
- ``tv2-tensor``: torchvision v2's ``RandomResizedCrop`` (bicubic, antialias) and
  ``RandAugment(num_ops=2, magnitude=7)`` on the sample as a uint8 CHW tensor (a cost proxy:
  torchvision's RandAugment draws other ops and magnitudes than timm's);
- ``batched-crop``: the crop of a whole batch as one bicubic ``grid_sample`` from the decoded
  uint8 array (the crop alone: the other RandAugment ops would still be per sample);
- ``batch``: ``rsb_tune.augment.batched`` (``augment_impl: batch``) for batches of 64 decoded
  uint8 images with Pillow's arithmetic: the crop alone and the whole transform as torch ops
  (the GPU's path), and the whole transform + normalise by the compiled CPU kernel
  (``rsb_tune.augment.kernels``, the path ``auto`` takes on a CPU);
- ``loader``: one epoch of the trial's training loader with ``workers`` 0 and 1 (a worker only
  helps when a core is free: a 2-core machine running 2 trials has none), and on the batched
  path.

Medians over ``--repeats`` alternating rounds. The machine's load affects all options alike.

    python benchmarks/data_path.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's rsb_tune

from _common import emit_result, print_table  # noqa: E402


def _per_sample_us(fn, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - t) / n * 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--samples", type=int, default=1024)
    args = p.parse_args(argv)

    import torch
    from torchvision.transforms import v2

    from rsb_tune.data.registry import SplitDataset, build_transforms, defer_normalize, load_splits
    from tests.conftest import make_config

    torch.set_num_threads(1)
    data = load_splits("digits")
    cfg = make_config("A2")
    train_tf, _ = build_transforms(cfg)
    tail_tf, normalize = defer_normalize(train_tf)
    crop, randaug, to_array = tail_tf.transforms
    ds = SplitDataset(data.train, tail_tf)
    n_train = len(ds)
    for i in range(n_train):
        ds.image(i)  # the trial caches its PIL images once
    imgs = [ds.image(i) for i in range(n_train)]
    cropped = [crop(im) for im in imgs]
    uint8 = torch.from_numpy(data.train.images).permute(0, 3, 1, 2).contiguous()  # (N, 3, 32, 32)
    tv_crop = v2.RandomResizedCrop(cfg["img_size"], scale=(cfg["scale_min"], 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
    tv_ra = v2.RandAugment(num_ops=2, magnitude=7)
    tv_cropped = [tv_crop(uint8[i]) for i in range(n_train)]
    n = args.samples

    def batched_crop(batch: int = 64) -> float:
        """Crop + resize of n samples as bicubic grid_sample over batches (affine per sample)."""
        import math

        t = time.perf_counter()
        g = torch.Generator().manual_seed(0)
        for s in range(0, n, batch):
            idx = torch.arange(s, s + batch) % n_train
            x = uint8[idx].float()
            area = torch.empty(batch).uniform_(cfg["scale_min"], 1.0, generator=g)
            logr = torch.empty(batch).uniform_(math.log(3 / 4), math.log(4 / 3), generator=g)
            r = logr.exp()
            w, h = (area * r).sqrt().clamp(max=1), (area / r).sqrt().clamp(max=1)
            cx = (torch.rand(batch, generator=g) * 2 - 1) * (1 - w)
            cy = (torch.rand(batch, generator=g) * 2 - 1) * (1 - h)
            theta = torch.zeros(batch, 2, 3)
            theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = w, h, cx, cy
            grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
            torch.nn.functional.grid_sample(x, grid, mode="bicubic", align_corners=False).clamp_(0, 255).to(torch.uint8)
        return (time.perf_counter() - t) / n * 1e6

    from rsb_tune.augment import batched as ba

    augment = ba.batch_augment_for(train_tf, data.train.images.shape[1:3])

    def batch_us(whole: bool, batch: int = 64, compiled: bool = False) -> float:
        """rsb_tune.augment.batched over n samples in batches of 64: torch ops, or the compiled kernel."""
        import numpy as np

        np.random.seed(0)
        t = time.perf_counter()
        for s in range(0, n, batch):
            x = torch.from_numpy(data.train.images[np.arange(s, s + batch) % n_train])
            if compiled:
                augment(x)  # on a CPU: the kernel, then normalise
            elif whole:
                augment.augment(x)
            else:
                img = x.permute(0, 3, 1, 2).float()
                ba.resized_crop(img, ba.crop_params(batch, 32, 32, augment.scale, augment.ratio), 32, 32, augment.interpolation)
        return (time.perf_counter() - t) / n * 1e6

    def loader_epoch(workers: int, impl: str = "pil") -> float:
        from rsb_tune.training.trial import build_trial

        parts = build_trial({**cfg, "workers": workers, "augment_impl": impl}, data)
        parts.sampler.set_epoch(0)
        next(iter(parts.loader))  # worker start-up outside the timing
        t = time.perf_counter()
        seen = 0
        for x, _ in parts.loader:
            parts.normalize(x)
            seen += x.shape[0]
        return (time.perf_counter() - t) / seen * 1e6

    items = {
        "pil: random-resized crop": lambda: _per_sample_us(lambda i: crop(imgs[i % n_train]), n),
        "pil: RandAugment m7 (2 ops)": lambda: _per_sample_us(lambda i: randaug(cropped[i % n_train]), n),
        "pil: to uint8 array": lambda: _per_sample_us(lambda i: to_array(cropped[i % n_train]), n),
        "pil: whole sample (trial dataset)": lambda: _per_sample_us(lambda i: ds[i % n_train], n),
        "tv2-tensor: random-resized crop": lambda: _per_sample_us(lambda i: tv_crop(uint8[i % n_train]), n),
        "tv2-tensor: RandAugment m7 (2 ops)": lambda: _per_sample_us(lambda i: tv_ra(tv_cropped[i % n_train]), n),
        "batched-crop: grid_sample bicubic, batch 64": batched_crop,
        "batch: random-resized crop, batch 64": lambda: batch_us(False),
        "batch, torch ops: whole transform, batch 64": lambda: batch_us(True),
        "batch, compiled kernel: whole transform + normalise, batch 64": lambda: batch_us(True, compiled=True),
        "loader: epoch, workers 0 (per sample)": lambda: loader_epoch(0),
        "loader: epoch, workers 1 (per sample)": lambda: loader_epoch(1),
        "loader: epoch, workers 0 (batched: the kernel)": lambda: loader_epoch(0, "batch"),
    }
    times: dict[str, list[float]] = {k: [] for k in items}
    for r in range(args.repeats):
        for k in items if r % 2 == 0 else reversed(list(items)):
            times[k].append(items[k]())
    rows = [{"option": k, "us_per_sample": round(statistics.median(v), 1), "min": round(min(v), 1), "max": round(max(v), 1)} for k, v in times.items()]
    print_table(rows, title=f"per-sample cost of the training augmentation, 32 px digits, 1 thread (medians of {args.repeats})")
    emit_result("data_path", {"args": vars(args), "rows": rows, "n_train": n_train})
    return 0


if __name__ == "__main__":
    sys.exit(main())
