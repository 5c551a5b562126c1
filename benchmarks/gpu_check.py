"""Every check that needs a GPU, in one command: ``python benchmarks/gpu_check.py`` (or
``benchmarks/gpu_check.sh``), for the day a GPU is lent.

On a machine with CUDA it installs nothing (the project and torch are there already) and runs,
in about 8 minutes on one GPU:

1. ``trial``: one digits trial on CUDA with ``amp: auto`` and ``channels_last: auto``: it must
   take bf16 autocast (where the GPU has it) and channels-last, and learn;
2. ``ddp``: a data-parallel trial on the GPUs present (``--workers-per-trial G``, NCCL) against
   the same seed on one worker; skipped, and said so, with one GPU (NCCL wants a GPU per rank);
3. ``packs``: the ``--pack-seeds``-seed study with ``--pack K`` for K = 1, 8, 32 (K = 1: one
   process per seed, eight per GPU): wall, images/s, GPU utilisation and peak GPU memory
   (``nvidia-smi``), and each packed study's val top-1 against the unpacked one (two samples
   of one distribution: a Kolmogorov-Smirnov or Mann-Whitney p below 0.001 is a mismatch);
4. ``study100``: the README's 100-seed digits study, packed (``--pack 32``), with its wall;
5. ``augment``: the batched augmentation as torch ops on CUDA against the compiled CPU kernel's
   pixels from the same draws (at most a level apart in 1e-4 of the pixels, 3 levels at most).

It prints one table and a ``RESULT {json}`` line, and exits 1 on any failure or mismatch
(2 without CUDA). ``--dry-run`` runs on a CPU: it plans every check (each study command goes
through the CLI's own ``--dry-run``) and runs each check's smallest CPU form (the trial in bf16
and channels-last on a 64-image slice, a pack of 2 against its unpacked seeds, the batched
augmentation's torch ops on the CPU against the kernel), so the script is known to work before
a GPU is there (``tests/test_gpu_check.py`` runs it).

    python benchmarks/gpu_check.py                   # on the GPU machine
    python benchmarks/gpu_check.py --dry-run         # here: plan and smallest forms on CPU
    python benchmarks/gpu_check.py --only trial augment
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's rsb_tune

from _common import emit_result, print_table, run_cli, temp_storage  # noqa: E402

PACKS = (1, 8, 32)
BUDGET_S = 480


@dataclasses.dataclass
class Ctx:
    dry: bool
    storage: Path
    args: argparse.Namespace
    gpus: int = 0

    @property
    def device(self) -> str:
        return "cpu" if self.dry else "cuda"


def _digits(n: int | None = None):
    from rsb_tune.data.registry import load_splits
    from rsb_tune.data.types import Split

    data = load_splits("digits")
    if n is None:
        return data

    def cut(split):
        return Split(split.images[:n], split.labels[:n], split.source)

    return dataclasses.replace(data, train=cut(data.train), val=cut(data.val), v2=cut(data.v2))


def _config(**over):
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.config import Layer, resolve
    from rsb_tune.planning.recipes import get_recipe

    return dict(resolve(get_recipe("A2"), get_dataset("digits").profile, [Layer("gpu_check", over)]).values)


def _train(cfg, data) -> list[dict]:
    from rsb_tune.training.trial import train

    reports: list[dict] = []
    train(cfg, lambda metrics, *, checkpoint=None: reports.append(metrics), data)
    return reports


def _cli(ctx: Ctx, name: str, args: list[str]) -> dict:
    """Run ``rsb-tune ARGS`` in a subprocess; in the dry mode the CLI's ``--dry-run`` parses and
    plans it in this process (its plan goes to the log) and a non-zero exit is an error."""
    import contextlib
    import io

    full = [*args, "--storage", str(ctx.storage), "--name", name, "--quiet"]
    cmd = "rsb-tune " + " ".join(full).replace(str(ctx.storage), "<tmp>")
    if ctx.dry:
        from rsb_tune.cli import main as cli_main

        out = io.StringIO()
        t = time.perf_counter()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                rc = cli_main([*full, "--dry-run"])
            except SystemExit as e:
                rc = e.code
        (ctx.storage / f"{name}.log").write_text(out.getvalue())
        if rc:
            raise RuntimeError(f"{cmd} --dry-run exited {rc}: {out.getvalue()[-500:]}")
        return {"cmd": cmd, "wall_s": round(time.perf_counter() - t, 1)}
    run = run_cli(full, sample=False, log=ctx.storage / f"{name}.log")
    return {"cmd": cmd, "wall_s": round(run["wall_s"], 1)}


# --------------------------------------------------------------------------- the checks


def check_trial(ctx: Ctx) -> dict:
    """A trial on CUDA with amp auto and channels-last auto (dry: CPU, bf16 and channels-last
    set, one epoch on 64 images)."""
    import torch

    if ctx.dry:
        cfg, data, want_amp = _config(device="cpu", amp="bf16", channels_last="on", epochs=1, repeated_aug=1), _digits(64), "bf16"
    else:
        cfg, data = _config(device="cuda", amp="auto", channels_last="auto", epochs=4), _digits()
        want_amp = "bf16" if torch.cuda.is_bf16_supported() else "off"
    t = time.perf_counter()
    last = _train(cfg, data)[-1]
    wall = time.perf_counter() - t
    ok = (last["runtime_device"], last["runtime_amp"], last["runtime_channels_last"]) == (ctx.device, want_amp, True) and math.isfinite(last["val_top1"])
    if not ctx.dry:
        ok = ok and last["val_top1"] > 20  # chance is 10 %: it learns
    return {"ok": ok, "wall_s": round(wall, 1), "amp": last["runtime_amp"], "channels_last": last["runtime_channels_last"],
            "val_top1": round(last["val_top1"], 2), "images_per_s": round(last["images_per_s"], 1)}  # fmt: skip


def check_ddp(ctx: Ctx) -> dict:
    """``--workers-per-trial G`` on the G GPUs present against one worker on the same seed."""
    gpus = 2 if ctx.dry else ctx.gpus
    if gpus < 2:
        return {"ok": True, "skipped": "one GPU: NCCL wants a GPU per rank (run it where there are two)"}
    base = ["seeds", "--n", "1", "--recipe", "A2", "--epochs", str(ctx.args.ddp_epochs)]
    dev = ["--set", f"device={ctx.device}"] + ([] if ctx.dry else ["--gpus-per-trial", "1"])
    ddp = _cli(ctx, "ddp", [*base, "--workers-per-trial", str(gpus), *dev])
    one = _cli(ctx, "ddp1", [*base, *dev])
    if ctx.dry:
        return {"ok": True, "planned": [ddp["cmd"], one["cmd"]]}
    import pandas as pd

    a, b = (pd.read_parquet(ctx.storage / n / "trials.parquet").iloc[0] for n in ("ddp", "ddp1"))
    ok = a.status == b.status == "ok" and int(a.runtime_world_size) == gpus
    return {"ok": bool(ok), "world_size": int(a.runtime_world_size), "val_top1_ddp": round(float(a.val_top1), 2), "val_top1_one": round(float(b.val_top1), 2),
            "wall_ddp_s": ddp["wall_s"], "wall_one_s": one["wall_s"]}  # fmt: skip


def _pack_equivalence_cpu() -> dict:
    """The smallest form of the packs check: a pack of 2 against its seeds unpacked, one update
    on 64 images in bf16: each seed's first loss within 2 % (bf16 rounding)."""
    from rsb_tune.training.packed import train_pack

    data = _digits(64)
    configs = {f"t{s:04d}": _config(seed=s, epochs=1, repeated_aug=1, threads=1, device="cpu", amp="bf16") for s in range(2)}
    packed: list[dict] = []
    train_pack(configs, lambda metrics, *, checkpoint=None: packed.append(metrics), data, pack_id="pack-t0000")
    diffs = {tid: abs(packed[0][tid]["train_loss"] / _train(cfg, data)[0]["train_loss"] - 1) for tid, cfg in configs.items()}
    return {"ok": max(diffs.values()) < 2e-2, "first_loss_rel_diff_max": f"{max(diffs.values()):.1e}"}


def check_packs(ctx: Ctx) -> dict:
    """K = 1, 8, 32 seeds per process on one GPU: speed, utilisation, memory, equivalence."""
    n, epochs = ctx.args.pack_seeds, ctx.args.pack_epochs
    cmds = {k: ["seeds", "--n", str(n), "--recipe", "A2", "--epochs", str(epochs), "--pack", str(k), "--set", f"device={ctx.device}",
                *([] if ctx.dry else ["--gpus-per-trial", "0.125" if k == 1 else "1"])] for k in PACKS}  # fmt: skip
    if ctx.dry:
        planned = [_cli(ctx, f"pack{k}", cmd)["cmd"] for k, cmd in cmds.items()]
        return {**_pack_equivalence_cpu(), "planned": planned}
    from packing import GpuSampler, _equivalence, _images_per_epoch

    import pandas as pd

    out: dict[str, Any] = {"ok": True}
    studies = {}
    for k, cmd in cmds.items():
        with GpuSampler() as gpu:
            run = _cli(ctx, f"pack{k}", cmd)
        trials = pd.read_parquet(ctx.storage / f"pack{k}" / "trials.parquet")
        images = float(trials["epochs_done"].sum()) * _images_per_epoch(ctx.storage / f"pack{k}")
        studies[k] = {"trials": trials}
        out[f"K{k}"] = {"wall_s": run["wall_s"], "ok_trials": int((trials.status == "ok").sum()), "images_per_s": round(images / run["wall_s"], 1), **gpu.summary()}
        out["ok"] = out["ok"] and out[f"K{k}"]["ok_trials"] == n
    for k in PACKS[1:]:
        eq = _equivalence(studies[k], studies[1])
        out[f"K{k}_vs_K1"] = eq
        out["ok"] = out["ok"] and min(eq["ks_p"], eq["mannwhitney_p"]) >= 1e-3
    return out


def check_study100(ctx: Ctx) -> dict:
    """The README's study, 100 seeds of A2, packed 32 to a process, on the GPU."""
    cmd = ["seeds", "--n", "100", "--recipe", "A2", "--pack", "32", "--set", f"device={ctx.device}"]
    if not ctx.dry:
        cmd += ["--gpus-per-trial", str(ctx.args.study_gpus_per_trial)]
    run = _cli(ctx, "study100", cmd)
    if ctx.dry:
        return {"ok": True, "planned": run["cmd"]}
    import pandas as pd

    trials = pd.read_parquet(ctx.storage / "study100" / "trials.parquet")
    ok = trials[trials.status == "ok"]
    return {"ok": len(ok) == 100, "wall_s": run["wall_s"], "ok_trials": len(ok), "val_top1": f"{ok.val_top1.mean():.2f} ± {ok.val_top1.std():.2f}"}


def check_augment(ctx: Ctx) -> dict:
    """The batched augmentation's torch ops on CUDA (dry: on the CPU) against the compiled CPU
    kernel's pixels, from the same draws, over 3 RandAugment policies."""
    import numpy as np
    import torch

    from rsb_tune.augment.batched import batch_augment_for
    from rsb_tune.data.registry import build_transforms

    pool = _digits().train.images[:256]
    worst = {"equal_share": 1.0, "max_diff": 0}
    for aa, hflip in (("rand-m7-mstd0.5-inc1", 0.0), ("rand-m9-mstd0.5-inc1", 0.5), ("rand-m10-n3", 0.0)):
        augment = batch_augment_for(build_transforms(_config(auto_augment=aa, hflip=hflip))[0], (32, 32))
        np.random.seed(5)
        ops = augment.augment(torch.from_numpy(pool).to(ctx.device)).permute(0, 2, 3, 1).cpu().numpy()
        np.random.seed(5)
        kernel = augment.augment_compiled(pool, np.arange(len(pool)))
        diff = np.abs(ops.astype(np.int64) - kernel.astype(np.int64))
        worst = {"equal_share": min(worst["equal_share"], float((diff == 0).mean())), "max_diff": max(worst["max_diff"], int(diff.max()))}
    return {"ok": worst["equal_share"] > 0.9999 and worst["max_diff"] <= 3, "device": ctx.device, **worst}


CHECKS: dict[str, Callable[[Ctx], dict]] = {"trial": check_trial, "ddp": check_ddp, "packs": check_packs, "study100": check_study100, "augment": check_augment}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="on a CPU: plan every check and run its smallest CPU form")
    p.add_argument("--only", nargs="+", choices=list(CHECKS), help="these checks only (default: all)")
    p.add_argument("--pack-seeds", type=int, default=32, help="seeds of each packs study (default 32)")
    p.add_argument("--pack-epochs", type=int, default=5, help="epochs of the packs studies (default 5)")
    p.add_argument("--ddp-epochs", type=int, default=2)
    p.add_argument("--study-gpus-per-trial", type=float, default=0.25, help="GPU share of each pack of the 100-seed study (default 0.25: 4 packs at once)")
    args = p.parse_args(argv)
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not args.dry_run and gpus == 0:
        print("gpu_check: no CUDA device here; --dry-run checks the script on a CPU", file=sys.stderr)
        return 2
    rows, results, t_all = [], {}, time.perf_counter()
    with temp_storage("rsb-gpu-check-") as storage:
        ctx = Ctx(dry=args.dry_run, storage=storage, args=args, gpus=gpus)
        for name in args.only or list(CHECKS):
            t = time.perf_counter()
            try:
                res = CHECKS[name](ctx)
            except Exception as e:  # a check that crashes is a failed check; the others still run
                traceback.print_exc()
                res = {"ok": False, "error": f"{type(e).__name__}: {e}"[:300]}
            res["check_s"] = round(time.perf_counter() - t, 1)
            results[name] = res
            detail = {k: v for k, v in res.items() if k not in ("ok", "check_s", "planned")}
            rows.append({"check": name, "ok": "ok" if res["ok"] else "FAIL", "seconds": res["check_s"], "figures": json.dumps(detail, default=str)[:160]})
            print(f"{name}: {'ok' if res['ok'] else 'FAIL'} ({res['check_s']} s)", flush=True)
    total = time.perf_counter() - t_all
    mode = "dry run on CPU" if args.dry_run else f"{gpus} GPU(s): {torch.cuda.get_device_name(0)}"
    print_table(rows, title=f"GPU checks ({mode}), {total:.0f} s in all" + ("" if args.dry_run or total <= BUDGET_S else f" - over the {BUDGET_S} s budget"))
    failed = [k for k, r in results.items() if not r["ok"]]
    emit_result("gpu_check", {"dry_run": args.dry_run, "gpus": gpus, "total_s": round(total, 1), "failed": failed, "checks": results})
    if failed:
        print(f"gpu_check: FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
