"""Where one training epoch of the real trial goes, by part, with the machine's calibration.

The trial is the real code: ``rsb_tune.training.trial.build_trial`` builds it from a resolved config
(digits profile, recipe A2 by default) and ``train_one_epoch`` / ``evaluate`` run it unchanged.
The parts are timed by marks the real loop passes through, not by a copy of it:

- ``data``: the training loader's ``__next__`` (sampler, per-sample PIL crop + RandAugment,
  collate), through a thin iterator around ``parts.loader``;
- ``batch prep``: from the batch to the model's forward pre-hook (normalise, channels-last,
  mixup/cutmix);
- ``forward``: the model's forward pre-hook to its forward hook;
- ``loss + backward``: the forward hook to the optimizer's step pre-hook (criterion,
  ``zero_grad``, ``backward``);
- ``optimizer``: the optimizer's step pre-hook to its post-hook;
- ``schedule + rest``: the step post-hook to the next ``__next__`` (scheduler, loss sum);
- ``evaluation``: ``evaluate(parts)`` after the epoch.

The convolution/matmul flops of one training step (``torch.utils.flop_counter``, forward +
backward) give the rate the model's compute runs at, beside the single-thread sgemm rate.
``--ops`` adds a ``torch.profiler`` table of one epoch grouped by op family (convolution,
batch norm, optimizer, data loader, other). ``--compare-timm-lamb`` alternates epochs with
timm's own per-tensor LAMB step (``foreach=False`` on the groups: what the trial used before
``rsb_tune.training.optim``) and rsb-tune's (on a CPU the flat step of ``rsb_tune.training.optim_kernels``), and reports both.

    python benchmarks/profile_epoch.py                       # 5 epochs after 1 warm-up, medians
    python benchmarks/profile_epoch.py --compare-timm-lamb --ops
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
from trial_throughput import MODELS, make_config  # noqa: E402

PARTS = ("data", "batch prep", "forward", "loss + backward", "optimizer", "schedule + rest")


class _Marks:
    """Time since the previous mark, credited to the part that just ended."""

    def __init__(self):
        self.totals = dict.fromkeys(PARTS, 0.0)
        self.t = time.perf_counter()

    def __call__(self, part: str) -> None:
        now = time.perf_counter()
        self.totals[part] += now - self.t
        self.t = now


class _TimedLoader:
    def __init__(self, loader, marks: _Marks):
        self.loader, self.marks = loader, marks

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):  # batch_size etc. from the real loader
        return getattr(self.loader, name)

    def __iter__(self):
        it = iter(self.loader)
        while True:
            self.marks("schedule + rest")
            try:
                batch = next(it)
            except StopIteration:
                return
            self.marks("data")
            yield batch


def _instrument(parts, marks: _Marks):
    """Hooks on the real model and optimizer, and the timed loader; returns the handles."""
    handles = [
        parts.model.register_forward_pre_hook(lambda *_: marks("batch prep")),
        parts.model.register_forward_hook(lambda *_: marks("forward")),
        parts.optimizer.register_step_pre_hook(lambda *_: marks("loss + backward")),
        parts.optimizer.register_step_post_hook(lambda *_: marks("optimizer")),
    ]
    parts.loader = _TimedLoader(parts.loader, marks)
    return handles


def step_flops(parts) -> float:
    """Flops (mostly convolutions) of one training step's forward + backward on a real batch,
    counted on a copy of the model so the trial's own state is untouched."""
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(parts.model).train()
    x, y = next(iter(parts.loader.loader if isinstance(parts.loader, _TimedLoader) else parts.loader))
    x = parts.normalize(x) if parts.normalize is not None else x
    x = x.contiguous(memory_format=parts.runtime.memory_format)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        torch.nn.functional.cross_entropy(out, y).backward()
    return float(counter.get_total_flops())


def _op_family(name: str) -> str:
    n = name.lower()
    if "optimizer.step" in n:
        return "optimizer (whole step)"
    if "dataloader" in n or "enumerate(" in n:
        return "data loader (whole next)"
    if "conv" in n:
        return "convolution"
    if "batch_norm" in n:
        return "batch norm"
    return "other ops"


def op_profile(parts, epoch: int, updates: int) -> tuple[list[dict], int]:
    """One epoch under torch.profiler: self CPU time by op family (the optimizer and loader
    rows are their whole calls, including the ops inside them, so the shares overlap there)."""
    from torch.profiler import ProfilerActivity, profile

    from rsb_tune.training.trial import train_one_epoch

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        loss, seen, updates = train_one_epoch(parts, epoch, updates)
        loss.item()
        wall = time.perf_counter() - t
    fam: dict[str, float] = {}
    for ev in prof.key_averages():
        key = _op_family(ev.key)
        us = ev.cpu_time_total if key.endswith("(whole step)") or key.endswith("(whole next)") else ev.self_cpu_time_total
        fam[key] = fam.get(key, 0.0) + us / 1e6
    rows = [{"family": k, "s": round(v, 4), "share_of_epoch": round(v / wall, 3)} for k, v in sorted(fam.items(), key=lambda kv: -kv[1])]
    return rows, updates


def _set_timm_step(optimizer, on: bool) -> None:
    for group in optimizer.param_groups:
        group["foreach"] = False if on else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=list(MODELS), default="default")
    p.add_argument("--epochs", type=int, default=5, help="measured epochs after one warm-up (default 5)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--recipe", default="A2")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--ops", action="store_true", help="also one epoch under torch.profiler, by op family")
    p.add_argument("--compare-timm-lamb", action="store_true", help="alternate epochs with timm's per-tensor LAMB step")
    args = p.parse_args(argv)

    import torch

    from rsb_tune.data.registry import load_splits
    from rsb_tune.training.trial import build_trial, evaluate, train_one_epoch

    data = load_splits("digits")
    cfg = make_config(MODELS[args.model][0], args)
    parts = build_trial(cfg, data)
    sync = torch.cuda.synchronize if parts.runtime.device.type == "cuda" else (lambda: None)
    flops = step_flops(parts)
    marks = _Marks()
    handles = _instrument(parts, marks)
    variants = ["rsb-tune", "timm per-tensor"] if args.compare_timm_lamb else ["rsb-tune"]
    epoch, updates = 0, 0
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(args.epochs + 1):  # the first is the warm-up
        for v in variants if r % 2 == 0 else variants[::-1]:
            _set_timm_step(parts.optimizer, v == "timm per-tensor")
            marks.totals = dict.fromkeys(PARTS, 0.0)
            sync()
            t = marks.t = time.perf_counter()
            loss, seen, updates = train_one_epoch(parts, epoch, updates)
            loss.item()
            sync()
            train_s = time.perf_counter() - t
            marks("schedule + rest")
            epoch += 1
            t = time.perf_counter()
            evaluate(parts)
            sync()
            eval_s = time.perf_counter() - t
            if r:
                runs[v].append({"train_s": train_s, "eval_s": eval_s, "images": seen, **marks.totals})
    for h in handles:
        h.remove()
    parts.loader = parts.loader.loader
    _set_timm_step(parts.optimizer, False)

    steps = parts.steps_per_epoch
    rows, summary = [], {}
    for v, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        total = med["train_s"] + med["eval_s"]
        for part in (*PARTS, "evaluation"):
            s = med["eval_s"] if part == "evaluation" else med[part]
            rows.append({"optimizer": v, "part": part, "s_per_epoch": round(s, 4), "ms_per_step": round(1e3 * s / steps, 3) if part != "evaluation" else "",
                         "share": round(s / total, 3)})  # fmt: skip
        fwd_bwd = med["forward"] + med["loss + backward"]
        summary[v] = {
            "train_ips": round(med["images"] / med["train_s"], 1),
            "epoch_s": round(med["train_s"], 4),
            "eval_s": round(med["eval_s"], 4),
            "optimizer_ms_per_step": round(1e3 * med["optimizer"] / steps, 3),
            "step_gflop_fwd_bwd": round(flops / 1e9, 3),
            "fwd_bwd_gflops": round(flops * steps / fwd_bwd / 1e9, 1),
        }
    print_table(rows, title=f"one training epoch by part ({args.model}, {steps} steps of {cfg['batch_size']}, {args.threads} thread(s); medians of {args.epochs} epochs)")
    print_table([{"optimizer": v, **s} for v, s in summary.items()], title="epoch figures (fwd_bwd_gflops: counted flops / (forward + loss + backward) time)")
    if args.compare_timm_lamb:
        a, b = summary["rsb-tune"], summary["timm per-tensor"]
        print(f"\noptimizer step: {b['optimizer_ms_per_step']} -> {a['optimizer_ms_per_step']} ms; train img/s ratio rsb-tune / timm: {a['train_ips'] / b['train_ips']:.3f}")
    ops = None
    if args.ops:
        ops, updates = op_profile(parts, epoch, updates)
        print_table(ops, title="one epoch under torch.profiler, self CPU time by op family (the two 'whole' rows include their inner ops)")
    emit_result("profile_epoch", {"args": vars(args), "parts": rows, "summary": summary, "ops": ops})
    return 0


if __name__ == "__main__":
    sys.exit(main())
