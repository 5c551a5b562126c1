"""Packed seeds (``--pack K``, issue 12) on the embedded default, through the real CLI.

1. **Equivalence** (any device): a ``--n-compare``-seed study packed (``--pack``
   ``--compare-pack``) against the same seeds unpacked: the difference of the means of val
   top-1 with its Welch 95 % interval (``analysis.compare``), the mean paired (same seed)
   difference, and two-sample tests of the two distributions (Kolmogorov-Smirnov and
   Mann-Whitney). Packed and unpacked runs of a seed agree to float rounding, which training
   amplifies, so the two studies are two samples of one distribution, not the same numbers.
2. **Speed**: the ``--n``-seed study with ``--pack K`` for each K of ``--packs``, one trial per
   device (``--gpus-per-trial 1`` on CUDA, all the CPUs on CPU) against the unpacked study the
   way it runs without packs (``--gpus-per-trial 0.125``: eight processes per GPU; on CPU one
   trial per core): wall time, images/s, and on CUDA GPU utilisation and peak GPU memory
   (sampled with ``nvidia-smi``). On CUDA also bf16 autocast packed against unpacked
   (the equivalence of 1. with ``--set amp=bf16``).

    python benchmarks/packing.py --device cuda          # 100 seeds, K in 1, 8, 32, 100; 40-seed equivalence
    python benchmarks/packing.py --device cpu --quick   # this machine: 8 seeds, K in 1 and 8, 1 epoch
    python benchmarks/packing.py --device cpu --skip-speed   # only the 40-seed equivalence

Wall times include Ray's start and the dataset's decoding: compare them only within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit_result, print_table, run_cli, temp_storage  # noqa: E402


class GpuSampler:
    """GPU utilisation and memory of device 0 every ``interval`` s through nvidia-smi."""

    def __init__(self, interval: float = 0.5):
        self.interval, self.samples, self._stop = interval, [], threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0"], capture_output=True, text=True, timeout=5).stdout
                util, mem = (float(x) for x in out.strip().split(","))
                self.samples.append((util, mem))
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples:
            return {"gpu_util_mean": None, "gpu_mem_peak_mib": None}
        utils = [u for u, _ in self.samples]
        return {"gpu_util_mean": round(sum(utils) / len(utils), 1), "gpu_mem_peak_mib": max(m for _, m in self.samples)}


def _study(storage: Path, name: str, n: int, pack: int, args, *, gpus: float | None, sets=()) -> dict:
    import pandas as pd

    cli = ["seeds", "--n", str(n), "--recipe", args.recipe, "--storage", str(storage), "--name", name, "--quiet", "--pack", str(pack)]
    if args.epochs:
        cli += ["--epochs", str(args.epochs)]
    if args.device == "cuda":
        cli += ["--gpus-per-trial", f"{gpus:g}", "--set", "device=cuda"]
    else:
        cli += ["--set", "device=cpu"]
        if gpus is None and pack > 1:  # one pack uses the machine's cores
            import os

            cli += ["--cpus-per-trial", str(os.cpu_count() or 1)]
    for item in sets:
        cli += ["--set", item]
    sampler = GpuSampler() if args.device == "cuda" else None
    with sampler or contextlib.nullcontext():
        run = run_cli(cli, sample=False, log=storage / f"{name}.log")
    trials = pd.read_parquet(storage / name / "trials.parquet")
    images = float(trials["epochs_done"].sum()) * _images_per_epoch(storage / name)
    row = {"study": name, "pack": pack, "seeds": len(trials), "ok": int((trials.status == "ok").sum()), "wall_s": round(run["wall_s"], 1),
           "images_per_s": round(images / run["wall_s"], 1) if images else None,
           "val_top1": f"{trials.val_top1.mean():.2f} ± {trials.val_top1.std():.2f}"}  # fmt: skip
    if sampler:
        row |= sampler.summary()
    return {"row": row, "trials": trials}


def _images_per_epoch(study: Path) -> int:
    """Images one trial trains on per epoch: its sampler's updates (drop_last) times the batch."""
    import json

    import yaml

    from rsb_tune.training.trial import build_sampler

    cfg = next(iter(json.loads((study / "plan.json").read_text()).values()))
    n_train = int(yaml.safe_load((study / "study.yaml").read_text())["data_sizes"]["n_train"])
    return len(build_sampler(range(n_train), cfg)) // cfg["batch_size"] * cfg["batch_size"]


def _equivalence(packed, unpacked) -> dict:
    from scipy import stats

    import analysis
    from analysis.stats import mean_ci

    a, b = packed["trials"], unpacked["trials"]
    c = analysis.compare(a, b, "val_top1")
    joined = a.set_index("seed")["val_top1"].to_frame("packed").join(b.set_index("seed")["val_top1"].to_frame("unpacked"), how="inner")
    d = (joined["packed"] - joined["unpacked"]).to_numpy()
    paired = mean_ci(d)  # the t-interval of the mean paired difference
    ks = stats.ks_2samp(a.val_top1, b.val_top1)
    return {
        "n": int(c["n_a"]), "mean_packed": round(c["mean_a"], 3), "mean_unpacked": round(c["mean_b"], 3),
        "std_packed": round(c["std_a"], 3), "std_unpacked": round(c["std_b"], 3),
        "delta": round(c["delta"], 3), "delta_ci95": [round(c["delta_ci_low"], 3), round(c["delta_ci_high"], 3)],
        "paired_delta": round(float(d.mean()), 3), "paired_ci95": [round(paired.low, 3), round(paired.high, 3)],
        "ks_p": round(float(ks.pvalue), 3), "mannwhitney_p": round(c["p_mannwhitney"], 3),
    }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--recipe", default="A2")
    p.add_argument("--n", type=int, default=100, help="seeds of the speed studies (default 100)")
    p.add_argument("--packs", default="1,8,32,100", help="pack sizes of the speed studies (default 1,8,32,100)")
    p.add_argument("--n-compare", type=int, default=40, help="seeds of the equivalence studies (default 40)")
    p.add_argument("--compare-pack", type=int, default=8)
    p.add_argument("--epochs", type=int, help="epochs (default: the recipe's, scaled by the profile)")
    p.add_argument("--quick", action="store_true", help="8 seeds, K in 1 and 8, 1 epoch; equivalence on 8 seeds")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-equivalence", action="store_true")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.packs, args.n_compare, args.epochs = 8, "1,8", 8, args.epochs or 1
    packs = [int(k) for k in args.packs.split(",")]
    result: dict = {"conditions": {"device": args.device, "recipe": args.recipe, "n": args.n, "packs": packs, "n_compare": args.n_compare, "compare_pack": args.compare_pack, "epochs": args.epochs or "recipe x profile"}}
    with temp_storage("rsb-pack-", keep=args.keep) as storage:
        if not args.skip_equivalence:
            pk = _study(storage, "eq-packed", args.n_compare, args.compare_pack, args, gpus=1.0)
            un = _study(storage, "eq-unpacked", args.n_compare, 1, args, gpus=0.125)
            result["equivalence"] = {"rows": [pk["row"], un["row"]], **_equivalence(pk, un)}
            print_table([pk["row"], un["row"]], title=f"{args.n_compare} seeds packed (K={args.compare_pack}) and unpacked")
            print_table([{k: v for k, v in result["equivalence"].items() if k != "rows"}], title="packed - unpacked, val top-1: difference of means (Welch 95 %), paired by seed, KS and Mann-Whitney p")
            if args.device == "cuda":
                pb = _study(storage, "bf16-packed", args.n_compare, args.compare_pack, args, gpus=1.0, sets=["amp=bf16"])
                ub = _study(storage, "bf16-unpacked", args.n_compare, 1, args, gpus=0.125, sets=["amp=bf16"])
                result["bf16"] = {"rows": [pb["row"], ub["row"]], **_equivalence(pb, ub)}
                print_table([{k: v for k, v in result["bf16"].items() if k != "rows"}], title="bf16 autocast: packed - unpacked")
        if not args.skip_speed:
            rows = [_study(storage, "unpacked", args.n, 1, args, gpus=0.125)["row"]]
            for k in packs:
                rows.append(_study(storage, f"pack-{k}", args.n, k, args, gpus=1.0 if args.device == "cuda" else None)["row"])
            base = rows[0]["wall_s"]
            for r in rows:
                r["speedup"] = round(base / r["wall_s"], 2)
            result["speed"] = rows
            print_table(rows, title=f"{args.n} seeds of {args.recipe}: unpacked ({'8 processes per GPU' if args.device == 'cuda' else 'one trial per core'}) against one trial per {'GPU' if args.device == 'cuda' else 'machine'} with --pack K")
        emit_result("packing", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
