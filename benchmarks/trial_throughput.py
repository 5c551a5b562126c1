"""Images/s of rsb-tune's training and evaluation steps against a minimal reference loop.

The trial side is the real code: ``rsb_tune.training.trial.build_trial`` builds the trial from a
resolved config (digits profile, recipe A2: mixup/cutmix, BCE, LAMB, cosine schedule per
update, RandAugment, repeated augmentation, drop path), and ``train_one_epoch`` / ``evaluate``
run it. The reference is written here from the same timm pieces, the way a tutorial would:
``create_model``, ``create_transform``, a dataset that makes a PIL image per sample, a plain
shuffled ``DataLoader``, ``Mixup``, ``BinaryCrossEntropy``, ``create_optimizer_v2('lamb')``,
``create_scheduler_v2`` stepped per update, and an eval loop over a ``DataLoader``.

A third runner is the trial as it was before ``rsb_tune.training.optim`` and ``rsb_tune.augment.transforms`` (the
old path, the speed-up's baseline): the same ``build_trial`` with timm's own per-tensor LAMB
step and timm's transform objects put back. A fourth is this code with the per-sample
augmentation (``augment_impl: pil``), beside the batched one ``auto`` takes.

All run in this process with the same threads, device, precision and memory format, one
epoch each, alternating, after one warm-up epoch each; the figure is the median of the
repeats, and the ratio is trial / reference. CPU seconds per image are reported beside wall
time because they are less disturbed by other work on the machine. A breakdown of the trial's
epoch (data pipeline alone, forward+backward+step on a fixed batch, evaluation) shows where the
time goes.

    python benchmarks/trial_throughput.py                 # default model, resnet18 and full-width resnet10t at 32 px
    python benchmarks/trial_throughput.py --quick         # default model and resnet18, fewer steps
    python benchmarks/trial_throughput.py --device cuda   # AMP bf16 + channels-last (the trial's CUDA defaults)
    python benchmarks/trial_throughput.py --amp-compare   # fp32 against bf16 autocast, the same trial, one run

``--amp-compare`` times the real trial twice, ``amp: off`` (fp32) and ``amp: bf16``, alternating
whole epochs and fixed-batch steps, and prints the bf16 / fp32 throughput ratio, what ``amp:
auto`` picks on this machine (bf16 where torch reports bf16 matrix units: AMX or AVX-512 BF16),
and each precision's peak resident memory (a fresh process each: two epochs and an evaluation).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's rsb_tune

from _common import emit_result, print_table  # noqa: E402

MODELS = {
    # name: (--set overrides on top of the digits profile, description)
    "default": ({}, "digits profile: resnet10t, channels 16-128, stem 16, 32 px (0.3 M params)"),
    "resnet18": ({"model": "resnet18", "model_kwargs": {}}, "resnet18 at 32 px (11.2 M params)"),
    "resnet10t-full": ({"model": "resnet10t", "model_kwargs": {}}, "resnet10t full width at 32 px (4.9 M params)"),
}


def make_config(model_overrides: dict, args) -> dict:
    import yaml

    from rsb_tune.planning.config import Layer, resolve
    from rsb_tune.data.registry import get_dataset
    from rsb_tune.planning.recipes import get_recipe

    over = {"threads": args.threads, "device": args.device, **model_overrides}
    if args.channels_last != "auto":
        over["channels_last"] = args.channels_last
    if args.batch_size:
        over["batch_size"] = args.batch_size
    for item in args.set:
        key, _, value = item.partition("=")
        over[key] = yaml.safe_load(value)
    return dict(resolve(get_recipe(args.recipe), get_dataset("digits").profile, [Layer("benchmark", over)]).values)


class _Capped:
    """A loader that stops after ``steps`` batches (``--steps``), for short measurements."""

    def __init__(self, loader, steps: int | None):
        self.loader, self.steps = loader, steps

    def __iter__(self):
        return itertools.islice(iter(self.loader), self.steps) if self.steps else iter(self.loader)

    def __len__(self):
        return min(len(self.loader), self.steps) if self.steps else len(self.loader)


# --------------------------------------------------------------------------- the reference loop


class Reference:
    """A plain timm training loop with the trial's ingredients, written without rsb-tune."""

    def __init__(self, cfg: dict, data, steps: int | None):
        import numpy as np
        import timm
        import torch
        from PIL import Image
        from timm.data import Mixup, create_transform
        from timm.loss import BinaryCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        from rsb_tune.training.trial import TrialRuntime  # only to read the same device/amp/memory-format decisions

        rt = TrialRuntime(cfg)
        self.device, self.cl = rt.device, rt.channels_last
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(rt.amp)
        self.mf = torch.channels_last if self.cl else torch.contiguous_format
        torch.manual_seed(cfg["model_seed"])
        model = timm.create_model(cfg["model"], num_classes=data.num_classes, drop_path_rate=cfg["drop_path"], **cfg["model_kwargs"])
        self.model = model.to(self.device, memory_format=self.mf)
        train_tf = create_transform(
            input_size=cfg["img_size"], is_training=True, scale=(cfg["scale_min"], 1.0), hflip=cfg["hflip"],
            color_jitter=cfg["color_jitter"], auto_augment=cfg["auto_augment"], interpolation=cfg["interpolation"], re_prob=cfg["re_prob"],
        )  # fmt: skip
        eval_tf = create_transform(input_size=cfg["test_img_size"], is_training=False, interpolation=cfg["interpolation"], crop_pct=cfg["crop_pct"])

        class DS(torch.utils.data.Dataset):
            def __init__(self, images, labels, tf):
                self.images, self.labels, self.tf = images, labels, tf

            def __len__(self):
                return len(self.labels)

            def __getitem__(self, i):
                return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])

        cuda = self.device.type == "cuda"
        g = torch.Generator().manual_seed(cfg["aug_seed"])
        self.loader = _Capped(
            torch.utils.data.DataLoader(
                DS(data.train.images, data.train.labels, train_tf), batch_size=cfg["batch_size"], shuffle=True, drop_last=True,
                num_workers=cfg["workers"], pin_memory=cuda, generator=g, persistent_workers=cfg["workers"] > 0,
            ),
            steps,
        )  # fmt: skip
        eval_images = np.concatenate([data.val.images] + ([data.v2.images] if data.v2 is not None else []))
        eval_labels = np.concatenate([data.val.labels] + ([data.v2.labels] if data.v2 is not None else []))
        self.eval_loader = torch.utils.data.DataLoader(
            DS(eval_images, eval_labels, eval_tf), batch_size=cfg["eval_batch_size"], shuffle=False, num_workers=cfg["workers"], pin_memory=cuda
        )
        self.mixup = Mixup(
            mixup_alpha=cfg["mixup_alpha"], cutmix_alpha=cfg["cutmix_alpha"], prob=cfg["mixup_prob"], switch_prob=cfg["mixup_switch_prob"],
            label_smoothing=cfg["smoothing"], num_classes=data.num_classes,
        )  # fmt: skip
        self.criterion = BinaryCrossEntropy(smoothing=0.0, target_threshold=cfg["bce_target_thresh"])
        self.opt = create_optimizer_v2(self.model, opt=cfg["opt"], lr=cfg["lr_resolved"], weight_decay=cfg["weight_decay"])
        self.sched, _ = create_scheduler_v2(
            self.opt, sched=cfg["sched"], num_epochs=cfg["epochs"], warmup_epochs=cfg["warmup_epochs"], warmup_lr=cfg["warmup_lr"],
            min_lr=cfg["min_lr"], step_on_epochs=False, updates_per_epoch=len(self.loader),
        )  # fmt: skip
        self.updates = 0

    def autocast(self):
        import torch

        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else torch.autocast(self.device.type, enabled=False)

    def train_epoch(self) -> int:
        self.model.train()
        seen, loss = 0, None
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.mf)
            y = y.to(self.device, non_blocking=True)
            x, y = self.mixup(x, y)
            with self.autocast():
                loss = self.criterion(self.model(x), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.updates += 1
            self.sched.step_update(num_updates=self.updates)
            seen += x.shape[0]
        loss.item()  # wait for the device
        return seen

    def eval_epoch(self) -> int:
        import torch

        self.model.eval()
        seen, correct = 0, 0
        with torch.no_grad():
            for x, y in self.eval_loader:
                x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.mf)
                with self.autocast():
                    out = self.model(x).float()
                correct += (out.argmax(1).cpu() == y).sum()
                seen += x.shape[0]
        int(correct)
        return seen


# --------------------------------------------------------------------------- the trial side


class Trial:
    """rsb-tune's own trial pieces, as ``rsb_tune.training.trial.train`` uses them. With ``old``, the
    trial as it was before ``rsb_tune.training.optim`` and ``rsb_tune.augment.transforms`` (the baseline): timm's
    own per-tensor LAMB step (``foreach=False`` on the groups) and timm's transform objects."""

    def __init__(self, cfg: dict, data, steps: int | None, old: bool = False):
        from rsb_tune.data.registry import build_transforms, defer_normalize
        from rsb_tune.training.trial import build_trial

        self.parts = build_trial({**cfg, "augment_impl": "pil"} if old else cfg, data)
        if old:
            for group in self.parts.optimizer.param_groups:
                group["foreach"] = False
            self.parts.loader.dataset.transform = defer_normalize(build_transforms(cfg)[0])[0]
        self.parts.loader = _Capped(self.parts.loader, steps)
        self.epoch = 0
        self.updates = 0

    def train_epoch(self) -> int:
        from rsb_tune.training.trial import train_one_epoch

        loss_sum, seen, self.updates = train_one_epoch(self.parts, self.epoch, self.updates)
        loss_sum.item()  # the trial's one sync per epoch
        self.epoch += 1
        return seen

    def eval_epoch(self) -> int:
        from rsb_tune.training.trial import evaluate

        out = evaluate(self.parts)
        return sum(len(correct) for _, correct in out.values())

    def data_only(self) -> int:
        """The training data pipeline alone (sampler, PIL transforms, collate, normalize)."""
        p = self.parts
        p.sampler.set_epoch(self.epoch)
        seen = 0
        for x, _ in p.loader:
            x = x.to(p.runtime.device, non_blocking=True)
            if p.normalize is not None:
                x = p.normalize(x)
            seen += x.shape[0]
        return seen

    def step_only(self, reps: int) -> int:
        """Mixup + forward + BCE + backward + LAMB + schedule on one fixed batch, ``reps`` times."""
        import torch

        p = self.parts
        x, y = next(iter(p.loader))
        x = x.to(p.runtime.device)
        x = (p.normalize(x) if p.normalize is not None else x).contiguous(memory_format=torch.channels_last if p.runtime.channels_last else torch.contiguous_format)
        y = y.to(p.runtime.device)
        p.model.train()
        loss = None
        for _ in range(reps):
            xm, ym = p.mixup(x.clone(), y) if p.mixup is not None else (x, y)
            with p.runtime.autocast():
                loss = p.criterion(p.model(xm), ym)
            p.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            p.optimizer.step()
            self.updates += 1
            if p.scheduler is not None:
                p.scheduler.step_update(num_updates=self.updates)
        loss.item()
        return reps * x.shape[0]


def _timed(fn, device) -> tuple[float, float, int]:
    """(wall s, process CPU s, images) of one call."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    n = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t, time.process_time() - c, n


def bench_model(name: str, args, data) -> dict:
    overrides, desc = MODELS[name]
    cfg = make_config(overrides, args)
    trial = Trial(cfg, data, args.steps)
    pil = Trial({**cfg, "augment_impl": "pil"}, data, args.steps)  # this code, per-sample augmentation
    old = Trial(cfg, data, args.steps, old=True)
    ref = Reference(cfg, data, args.steps)
    device = trial.parts.runtime.device
    # warm-up: one epoch each (first-touch allocations, the trial's PIL image cache, the kernel's compilation)
    trial.train_epoch(), pil.train_epoch(), old.train_epoch(), ref.train_epoch(), trial.eval_epoch(), ref.eval_epoch()
    m = {k: [] for k in ("trial_train", "pil_train", "old_train", "ref_train", "trial_eval", "ref_eval")}
    cpu = {k: [] for k in m}
    for r in range(args.repeats):
        train = [("trial_train", trial.train_epoch), ("pil_train", pil.train_epoch), ("old_train", old.train_epoch), ("ref_train", ref.train_epoch)]
        evals = [("trial_eval", trial.eval_epoch), ("ref_eval", ref.eval_epoch)]
        order = train + evals if r % 2 == 0 else train[::-1] + evals[::-1]  # alternate who goes first
        for key, fn in order:
            wall, c, n = _timed(fn, device)
            m[key].append(n / wall)
            cpu[key].append(c / n * 1e6)
    data_ips = [(lambda w, c, n: n / w)(*_timed(trial.data_only, device)) for _ in range(max(1, args.repeats // 2))]
    reps = len(trial.parts.loader)
    step_ips = [(lambda w, c, n: n / w)(*_timed(lambda: trial.step_only(reps), device)) for _ in range(max(1, args.repeats // 2))]
    med = {k: statistics.median(v) for k, v in m.items()}
    train_ips, data_med, step_med = med["trial_train"], statistics.median(data_ips), statistics.median(step_ips)
    rt = trial.parts.runtime
    return {
        "model": name,
        "description": desc,
        "device": rt.device.type,
        "amp": rt.amp,
        "channels_last": rt.channels_last,
        "threads": rt.threads,
        "batch": cfg["batch_size"],
        "img": cfg["img_size"],
        "steps_per_epoch": len(trial.parts.loader),
        "trial_train_ips": round(train_ips, 1),
        "augment": rt.augment,
        "pil_train_ips": round(med["pil_train"], 1),
        "speedup_vs_pil": round(train_ips / med["pil_train"], 3),
        "trial_train_cpu_us_per_img_pil": round(statistics.median(cpu["pil_train"]), 1),
        "old_train_ips": round(med["old_train"], 1),
        "speedup_vs_old": round(train_ips / med["old_train"], 3),
        "trial_train_cpu_us_per_img_old": round(statistics.median(cpu["old_train"]), 1),
        "ref_train_ips": round(med["ref_train"], 1),
        "train_ratio": round(train_ips / med["ref_train"], 3),
        "trial_eval_ips": round(med["trial_eval"], 1),
        "ref_eval_ips": round(med["ref_eval"], 1),
        "eval_ratio": round(med["trial_eval"] / med["ref_eval"], 3),
        "trial_train_cpu_us_per_img": round(statistics.median(cpu["trial_train"]), 1),
        "ref_train_cpu_us_per_img": round(statistics.median(cpu["ref_train"]), 1),
        "data_only_ips": round(data_med, 1),
        "step_only_ips": round(step_med, 1),
        # share of a training epoch spent in the data pipeline: its time per image over the epoch's
        "data_share": round(train_ips / data_med, 3),
        "repeats": args.repeats,
        "train_ips_all": [round(v, 1) for v in m["trial_train"]],
        "old_ips_all": [round(v, 1) for v in m["old_train"]],
        "ref_ips_all": [round(v, 1) for v in m["ref_train"]],
    }


_PEAK_RSS = """
import json, resource, sys, types
sys.path[:0] = sys.argv[1:3]
import trial_throughput as tt
from rsb_tune.data.registry import load_splits
args = types.SimpleNamespace(**json.loads(sys.argv[3]))
trial = tt.Trial(tt.make_config(json.loads(sys.argv[4]), args), load_splits("digits"), args.steps)
trial.train_epoch(); trial.eval_epoch(); trial.train_epoch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_rss_mb(overrides: dict, args) -> float:
    """Peak resident memory (MiB) of a fresh process that builds the trial and runs two
    training epochs and an evaluation (the same for both precisions but ``amp``)."""
    import json
    import subprocess

    here = Path(__file__).resolve().parent
    fields = {k: v for k, v in vars(args).items() if isinstance(v, (int, float, str, list, type(None)))}
    out = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(here), str(here.parent), json.dumps(fields), json.dumps(overrides)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return round(float(out.strip().splitlines()[-1]), 1)


def bench_amp(name: str, args, data) -> dict:
    """fp32 against bf16 autocast on one model: the whole training epoch and the step alone."""
    import torch

    from rsb_tune.training.trial import TrialRuntime, cpu_bf16_units

    overrides, desc = MODELS[name]
    trials = {amp: Trial(make_config({**overrides, "amp": amp}, args), data, args.steps) for amp in ("off", "bf16")}
    device = trials["off"].parts.runtime.device
    for t in trials.values():
        t.train_epoch()  # warm-up
    epoch = {k: [] for k in trials}
    step = {k: [] for k in trials}
    reps = len(trials["off"].parts.loader)
    for r in range(args.repeats):
        for amp in ("off", "bf16") if r % 2 == 0 else ("bf16", "off"):
            wall, _, n = _timed(trials[amp].train_epoch, device)
            epoch[amp].append(n / wall)
            wall, _, n = _timed(lambda: trials[amp].step_only(reps), device)
            step[amp].append(n / wall)
    med = {k: statistics.median(v) for k, v in epoch.items()}
    smed = {k: statistics.median(v) for k, v in step.items()}
    rss = {amp: peak_rss_mb({**overrides, "amp": amp}, args) for amp in ("off", "bf16")}
    caps = torch.cpu.get_capabilities() if device.type == "cpu" else {}
    return {
        "model": name,
        "description": desc,
        "device": device.type,
        "cpu_units": "amx" if caps.get("amx_bf16") else "avx512_bf16" if caps.get("avx512_bf16") else "none" if device.type == "cpu" else "-",
        "auto_picks": TrialRuntime(make_config({**overrides, "amp": "auto"}, args)).amp,
        "bf16_units": cpu_bf16_units() if device.type == "cpu" else None,
        "threads": args.threads,
        "fp32_train_ips": round(med["off"], 1),
        "bf16_train_ips": round(med["bf16"], 1),
        "train_ratio_bf16_over_fp32": round(med["bf16"] / med["off"], 3),
        "fp32_step_ips": round(smed["off"], 1),
        "bf16_step_ips": round(smed["bf16"], 1),
        "step_ratio_bf16_over_fp32": round(smed["bf16"] / smed["off"], 3),
        "fp32_peak_rss_mb": rss["off"],
        "bf16_peak_rss_mb": rss["bf16"],
        "repeats": args.repeats,
        "fp32_ips_all": [round(v, 1) for v in epoch["off"]],
        "bf16_ips_all": [round(v, 1) for v in epoch["bf16"]],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=list(MODELS), help="default: all (--quick: default and resnet18)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--steps", type=int, help="cap the batches of a measured epoch (default: the whole epoch)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as a trial with --cpus-per-trial 1)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    p.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto", help="auto: on for CUDA, off on CPU (the trial's rule)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--recipe", default="A2")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    p.add_argument("--quick", action="store_true", help="default and resnet18 only, 3 repeats, 8 steps an epoch")
    p.add_argument("--amp-compare", action="store_true", help="fp32 against bf16 autocast on the same trial, alternating, one run")
    args = p.parse_args(argv)
    if args.quick:
        args.models = args.models or ["default", "resnet18"]
        args.repeats = min(args.repeats, 3)
        args.steps = args.steps or 8
    models = args.models or list(MODELS)

    from rsb_tune.data.registry import load_splits

    data = load_splits("digits")
    if args.amp_compare:
        rows = [bench_amp(name, args, data) for name in (args.models or ["default"])]
        print_table(
            rows,
            ["model", "device", "cpu_units", "auto_picks", "threads", "fp32_train_ips", "bf16_train_ips", "train_ratio_bf16_over_fp32", "fp32_step_ips", "bf16_step_ips", "step_ratio_bf16_over_fp32", "fp32_peak_rss_mb", "bf16_peak_rss_mb"],
            title=f"images/s, fp32 against bf16 autocast, median of {args.repeats} alternating epochs (ratio = bf16 / fp32; > 1: bf16 faster)",
        )
        emit_result("trial_throughput_amp", {"args": vars(args), "models": rows})
        return 0
    rows = [bench_model(name, args, data) for name in models]
    print_table(
        rows,
        ["model", "device", "amp", "channels_last", "batch", "img", "trial_train_ips", "ref_train_ips", "train_ratio",
         "trial_eval_ips", "ref_eval_ips", "eval_ratio", "trial_train_cpu_us_per_img", "ref_train_cpu_us_per_img"],
        title=f"images/s, median of {args.repeats} alternating epochs (ratio = trial / reference)",
    )  # fmt: skip
    print_table(
        rows,
        ["model", "augment", "trial_train_ips", "pil_train_ips", "speedup_vs_pil", "old_train_ips", "speedup_vs_old", "trial_train_cpu_us_per_img", "trial_train_cpu_us_per_img_pil", "trial_train_cpu_us_per_img_old"],
        title="this trial against the trial before rsb_tune.training.optim / rsb_tune.augment.transforms (timm's LAMB step and transforms), same run",
    )
    print_table(
        rows,
        ["model", "trial_train_ips", "data_only_ips", "step_only_ips", "data_share"],
        title="where a training epoch goes: the data pipeline alone, the step alone on a fixed batch",
    )
    emit_result("trial_throughput", {"args": {k: v for k, v in vars(args).items()}, "models": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
