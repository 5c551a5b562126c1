"""Images/s of the decode + augment pipeline per dataset format, with 0, 1 and 2 loader
workers, trained from memory against streamed.

The formats are written here in their real on-disk layouts (random pixels, 32 px, 10
classes): CIFAR-10's python pickle batches (``torch/cifar10``), a folder of PNG class folders
and one ``.tar`` of them (``folder``). Each is loaded by ``rsb_tune.data.registry.load_splits`` twice:
with the default memory budget (decoded once, trained from memory) and with
``memory_budget_mb=0`` (streamed: every epoch reads and decodes the files again). The
pipeline timed is the real one: ``rsb_tune.training.trial.build_trial`` on the cifar10 profile (recipe
A2: RandomResizedCrop, flip, RandAugment rand-m7, repeated augmentation 3) and one pass over
its training ``DataLoader`` (its sampler, batch 256, persistent workers); the model is never
run. A second pipeline, crop + flip without RandAugment, shows the decode's share. Every
setting is built first, then timed in rounds (one epoch of each setting per round) and the
median round is reported, so that load from other work on the machine hits all settings. The load itself (index, and decode when in memory: once per study) is timed too, after
one untimed load of each format (imports, page cache).

    python benchmarks/datasets.py              # 3,000 train images per format, 3 rounds
    python benchmarks/datasets.py --n 1000 --rounds 1
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's rsb_tune

from _common import emit_result, print_table  # noqa: E402


def write_formats(root: Path, n: int) -> dict[str, str]:
    """CIFAR-10 batches, a PNG folder and a tar of it, all with ``n`` train and n/5 val images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    n_val = max(10, n // 5)
    c = root / "cifar" / "cifar-10-batches-py"
    c.mkdir(parents=True)
    per = n // 5
    for i in range(1, 6):
        with open(c / f"data_batch_{i}", "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (per, 3072), dtype=np.uint8), "labels": [int(x) for x in (np.arange(per) + i) % 10]}, f)
    with open(c / "test_batch", "wb") as f:
        pickle.dump({"data": rng.integers(0, 256, (n_val, 3072), dtype=np.uint8), "labels": [int(x) for x in np.arange(n_val) % 10]}, f)
    with open(c / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    folder = root / "folder"
    for split, count in (("train", n), ("val", n_val)):
        for k in range(count):
            d = folder / split / f"c{k % 10}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{k}.png")
    tar = root / "folder.tar"
    with tarfile.open(tar, "w") as tf:
        for p in sorted(folder.rglob("*.png")):
            tf.add(p, arcname=str(p.relative_to(folder)))
    return {"torch/cifar10": str(root / "cifar"), "folder": str(folder), "folder .tar": str(tar)}


PIPELINES = {
    "A2": {},  # the cifar10 profile under recipe A2: crop, flip, RandAugment rand-m7, repeated aug 3
    "crop+flip": {"auto_augment": None, "repeated_aug": 1},  # the same without RandAugment: decode weighs more
}


def config_for(dataset: str, workers: int, pipeline: str) -> tuple[dict, str]:
    from rsb_tune.planning.config import Layer, resolve
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.recipes import get_recipe

    name = "folder" if dataset.startswith("folder") else dataset
    layer = Layer("bench", {"model": "test_resnet", "workers": workers, "batch_size": 256, "device": "cpu", "threads": 1, **PIPELINES[pipeline]})
    return dict(resolve(get_recipe("A2"), get_dataset("torch/cifar10").profile, [layer]).values), name


def epoch_rate(parts, epoch: int) -> float:
    """Images/s of one pass over the trial's training loader (decode + augment + collate)."""
    parts.sampler.set_epoch(epoch)
    t0 = time.perf_counter()
    seen = sum(x.shape[0] for x, _ in parts.loader)
    return seen / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000, help="train images per format (default 3000)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all settings, one epoch each; the median is reported (default 3)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()

    import torch

    from rsb_tune.data.registry import load_splits
    from rsb_tune.training.trial import build_trial

    torch.set_num_threads(1)
    settings = []  # (format, storage, pipeline, workers, load_s, parts)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_formats(Path(tmp), args.n)
        for fmt, path in paths.items():  # imports (torchvision, timm readers) and the page cache, outside the timed loads
            load_splits({"dataset": "folder" if fmt.startswith("folder") else fmt, "data_path": path, "memory_budget_mb": 0})
        for fmt, path in paths.items():
            for storage, budget in (("memory", 2048), ("stream", 0)):
                cfg0, name = config_for(fmt, 0, "A2")
                t0 = time.perf_counter()
                data = load_splits({**cfg0, "dataset": name, "data_path": path, "memory_budget_mb": budget})
                load_s = time.perf_counter() - t0
                assert data.info["storage"] == storage, data.info
                for pipeline, workers in [*(("A2", w) for w in args.workers), ("crop+flip", 0)]:
                    cfg, _ = config_for(fmt, workers, pipeline)
                    parts = build_trial({**cfg, "dataset": name, "data_path": path, "memory_budget_mb": budget}, data)
                    epoch_rate(parts, 0)  # warm-up: workers start, PIL images cached (memory)
                    settings.append([fmt, storage, pipeline, workers, load_s, parts, []])
        # rounds over every setting, so that load from other work on the machine hits all alike
        for r in range(args.rounds):
            for s in settings:
                s[6].append(epoch_rate(s[5], 1 + r))
    rows, result = [], {"n_train": args.n, "rounds": args.rounds, "settings": []}
    for fmt, storage, pipeline, workers, load_s, _, rates in settings:
        rate = statistics.median(rates)
        rows.append({"format": fmt, "storage": storage, "pipeline": pipeline, "workers": workers, "load s": round(load_s, 2), "images/s": round(rate), "min-max": f"{min(rates):.0f}-{max(rates):.0f}"})
        result["settings"].append({"format": fmt, "storage": storage, "pipeline": pipeline, "workers": workers, "load_s": round(load_s, 3), "images_per_s": round(rate, 1), "rates": [round(x, 1) for x in rates]})
    print_table(rows, title="decode + augment (cifar10 profile), batch 256, median of one-epoch rounds")
    by = {(s["format"], s["storage"], s["pipeline"], s["workers"]): s["images_per_s"] for s in result["settings"]}
    keys = [("A2", w) for w in args.workers] + [("crop+flip", 0)]
    ratios = {f"{f} {p} w{w}": round(by[(f, "memory", p, w)] / by[(f, "stream", p, w)], 2) for f in paths for p, w in keys}
    print("memory / stream images/s:", ", ".join(f"{k} {v}x" for k, v in ratios.items()))
    result["memory_over_stream"] = ratios
    emit_result("datasets", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
