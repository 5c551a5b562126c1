"""One training trial: pure PyTorch + timm, no Ray.

``train(config, report, data)`` runs a whole trial from a resolved config (see
:mod:`rsb_tune.planning.config`) and calls ``report(metrics, checkpoint=..., final=...)`` once per
epoch. Every ingredient comes from a timm factory: ``create_model`` (drop path),
``Mixup`` (mixup/cutmix, label smoothing), ``BinaryCrossEntropy`` or cross-entropy,
``create_optimizer_v2``, ``create_scheduler_v2`` (cosine with warm-up, stepped per update),
``create_transform`` and ``RepeatAugSampler`` (offset by the data seed). The pieces are
public for benchmarks and tools that time the real code: ``build_trial(config, data)`` builds
them, ``train_one_epoch(parts, epoch, num_updates)`` and ``evaluate(parts)`` run one epoch.

Randomness has three independent streams, each recorded: ``model_seed`` (weight init),
``data_seed`` (sample order) and ``aug_seed`` (transforms, mixup/cutmix draws, drop path).
On CPU the same config gives bit-identical metrics; a checkpoint holds every RNG state, so a
resumed trial continues exactly where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from typing import Any, Callable, Mapping, Protocol

import numpy as np
import torch

from rsb_tune.data.registry import DatasetSplits, DecodedBatches, SplitDataset, build_transforms, defer_normalize
from rsb_tune.training.precision import bf16_conv_hazards, cpu_bf16_units, resolve_amp
from analysis import contract as C
from analysis.contract import pack_correct

logger = logging.getLogger("rsb_tune")

__all__ = ["train", "initial_model", "Reporter", "TrialRuntime", "cpu_bf16_units", "TrialParts", "build_trial", "train_one_epoch", "evaluate", "warm_cpu_kernels"]



class Reporter(Protocol):
    def __call__(self, metrics: dict[str, Any], *, checkpoint: dict | None = None) -> None: ...


class TrialRuntime:
    """What the trial resolved about where it runs (device, precision, threads, and its rank
    when a data-parallel trial runs under ``torch.distributed``, e.g. Ray Train's TorchTrainer)."""

    def __init__(self, config: Mapping[str, Any]):
        import torch.distributed as dist

        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world_size = dist.get_world_size() if self.distributed else 1
        if self.world_size != config["workers_per_trial"]:
            raise RuntimeError(f"workers_per_trial is {config['workers_per_trial']} but {self.world_size} processes run this trial")
        want = config["device"]
        cuda = torch.cuda.is_available()
        if want == "cuda" and not cuda:
            raise RuntimeError("device 'cuda' requested but CUDA is not available to this trial")
        use_cuda = want == "cuda" or (want == "auto" and cuda)
        # under DDP the launcher (Ray Train) has set this process's device already
        self.device = torch.device("cuda", torch.cuda.current_device()) if use_cuda else torch.device("cpu")
        on_cuda = self.device.type == "cuda"
        self.amp_asked = config["amp"]
        self.amp = resolve_amp(self.amp_asked, self.device)
        cl = config["channels_last"]
        self.channels_last = on_cuda if cl == "auto" else cl == "on"
        self.threads = int(config["threads"] or 1)
        self.augment = "pil"  # set by build_train_loader: "batch" (rsb_tune.augment.batched) or "pil" (per sample)

    def check_model(self, model: torch.nn.Module, img_size: int) -> None:
        """bf16 on a CPU only for a model whose convolutions' bf16 gradients the CPU gets right
        (:func:`rsb_tune.training.precision.bf16_conv_hazards`): ``amp: auto`` falls back to
        fp32 (recorded: ``runtime_amp`` off), an explicit ``amp: bf16`` is refused."""
        if self.amp != "bf16" or self.device.type != "cpu":
            return
        bad = bf16_conv_hazards(model, img_size)
        if not bad:
            return
        why = f"{bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}: a CPU's bf16 weight gradient there is wrong (a kernel wider than 1 with a stride larger than its input; benchmarks/RESULTS.md section 14c)"
        if self.amp_asked != "auto":
            raise ValueError(f"amp=bf16 at img_size {img_size}: {why}; use amp=auto (fp32 for this model on a CPU), amp=off or a larger img_size")
        logger.info("amp auto: fp32, not bf16, for this model at img_size %d: %s", img_size, why)
        self.amp = "off"

    def autocast(self):
        if self.amp == "off":
            return torch.autocast(self.device.type, enabled=False)
        dtype = torch.bfloat16 if self.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def as_dict(self) -> dict[str, Any]:
        return {"device": self.device.type, "amp": self.amp, "channels_last": self.channels_last, "threads": self.threads, "world_size": self.world_size, "augment": self.augment}

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def all_reduce_sum(self, value: torch.Tensor) -> torch.Tensor:
        """Sum over the ranks of a data-parallel trial (identity for one process)."""
        if self.distributed:
            import torch.distributed as dist

            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value


class _SeededRepeatAugSampler:
    """timm's RepeatAugSampler orders samples by the epoch number alone, so every seed of a
    study would see the same order. This offsets the epoch by the trial's data seed."""

    def __init__(self, dataset, *, num_repeats: int, data_seed: int, num_replicas: int = 1, rank: int = 0):
        from timm.data.distributed_sampler import RepeatAugSampler

        self._inner = RepeatAugSampler(dataset, num_replicas=num_replicas, rank=rank, num_repeats=num_repeats)
        self._seed = data_seed

    def set_epoch(self, epoch: int) -> None:
        self._inner.set_epoch(self._seed * (1 << 20) + epoch)

    def __iter__(self):
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)


def build_sampler(dataset, config: Mapping[str, Any], *, num_replicas: int = 1, rank: int = 0):
    """Repeated-augmentation sampler when ``repeated_aug`` > 1, else a seeded shuffle."""
    if config["repeated_aug"] > 1:
        return _SeededRepeatAugSampler(dataset, num_repeats=config["repeated_aug"], data_seed=config["data_seed"], num_replicas=num_replicas, rank=rank)
    from torch.utils.data import DistributedSampler

    return DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=config["data_seed"], drop_last=False)


def build_model(config: Mapping[str, Any], num_classes: int):
    import timm

    import rsb_tune.training.models  # noqa: F401 - registers the CIFAR-stem ResNets

    torch.manual_seed(config["model_seed"])
    return timm.create_model(config["model"], num_classes=num_classes, drop_path_rate=config["drop_path"], **config["model_kwargs"])


def initial_model(config: Mapping[str, Any], num_classes: int):
    """The trial's model before training: :func:`build_model`'s (weights seeded by
    ``model_seed``), or, with ``init_from`` (a fine-tune, :mod:`rsb_tune.planning.finetune`),
    the source trial's final weights (loaded as data only) on every layer but the classifier,
    which stays the new, seeded head for this dataset's ``num_classes`` (as timm's
    ``reset_classifier`` would make it)."""
    from rsb_tune.training import checkpoint

    model = build_model(config, num_classes)
    source = config.get("init_from")
    if not source:
        return model
    state = checkpoint.load(checkpoint.file_in(source["checkpoint"], C.CHECKPOINT_FILE), map_location="cpu")
    head = model.pretrained_cfg.get("classifier") or "fc"

    def in_head(name: str) -> bool:
        return name == head or name.startswith(head + ".")

    weights = {k: v for k, v in checkpoint.weights_of(state, source["trial_id"]).items() if not in_head(k)}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not in_head(k) for k in missing):
        raise ValueError(f"{source['checkpoint']}: the weights of {source['study']}/{source['trial_id']} do not fit model {config['model']} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


def build_criterion(config: Mapping[str, Any], mixing: bool):
    """BCE (RSB) or cross-entropy; with mixup/cutmix the smoothing goes through Mixup."""
    from timm.loss import BinaryCrossEntropy, LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if config["loss"] == "bce":
        return BinaryCrossEntropy(smoothing=0.0 if mixing else config["smoothing"], target_threshold=config["bce_target_thresh"])
    if mixing:
        return SoftTargetCrossEntropy()
    return LabelSmoothingCrossEntropy(config["smoothing"]) if config["smoothing"] > 0 else torch.nn.CrossEntropyLoss()


def build_mixup(config: Mapping[str, Any], num_classes: int):
    from timm.data import Mixup

    if config["mixup_alpha"] <= 0 and config["cutmix_alpha"] <= 0:
        return None
    return Mixup(
        mixup_alpha=config["mixup_alpha"],
        cutmix_alpha=config["cutmix_alpha"],
        prob=config["mixup_prob"],
        switch_prob=config["mixup_switch_prob"],
        label_smoothing=config["smoothing"],
        num_classes=num_classes,
    )


def _seed_augmentation(aug_seed: int) -> torch.Generator:
    """Seed the global streams the augmentations draw from (torch: crops, flips, drop path;
    numpy: mixup/cutmix; python: RandAugment). Returns the loader's own generator."""
    torch.manual_seed(aug_seed)
    np.random.seed(aug_seed % (2**32))
    random.seed(aug_seed)
    return torch.Generator().manual_seed(aug_seed)


def global_rng_state() -> dict[str, Any]:
    """The process's global streams (torch, numpy, python; CUDA's where there is one)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rng_state(loader_gen: torch.Generator) -> dict[str, Any]:
    return {**global_rng_state(), "loader": loader_gen.get_state()}


def _set_rng_state(state: Mapping[str, Any], loader_gen: torch.Generator) -> None:
    set_global_rng_state(state)
    loader_gen.set_state(state["loader"])


def _return_free_heap() -> None:
    """Give the heap's free pages back to the OS before a trial starts. A reused Ray actor runs
    each trial in a new thread; glibc gives threads their own malloc arenas and keeps what a
    finished trial freed in them, so without this an actor's memory grows with every trial it
    runs (the default model: ~0.95 GB RSS after its first trial, ~1.3 GB after 20; with this,
    ~1.05 GB). Costs a few milliseconds; a no-op where the C library is not glibc."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Evaluator:
    """Top-1/top-5/loss on one split. A decoded split is transformed once per trial (the eval
    transform is deterministic) and kept on the trial's device in the model's memory format,
    so each epoch's evaluation is a few batched forwards and no data work."""

    def __init__(self, split, transform, runtime: TrialRuntime, batch_size: int, workers: int):
        self.n = len(split)
        self.runtime = runtime
        self.batch_size = batch_size
        self.labels = torch.tensor(np.array(split.labels), dtype=torch.long)
        self._mf = runtime.memory_format
        ds = SplitDataset(split, transform)
        if split.decoded:
            self.images = torch.stack([ds[i][0] for i in range(self.n)]).to(runtime.device).contiguous(memory_format=self._mf)
            self.loader = None
        else:
            self.images = None
            self.loader = torch.utils.data.DataLoader(
                ds,
                batch_size=batch_size,
                shuffle=False,
                num_workers=workers,
                pin_memory=runtime.device.type == "cuda",
                persistent_workers=workers > 0,
            )

    def _batches(self):
        if self.loader is not None:
            yield from (x for x, _ in self.loader)
        else:
            for i in range(0, self.n, self.batch_size):
                yield self.images[i : i + self.batch_size]

    @torch.no_grad()
    def logits(self, forward, *, dim: int = 0) -> torch.Tensor:
        """``forward``'s float logits over the whole split, on the host (its one sync); the
        batches are concatenated along ``dim`` (1 for a packed model's (K, N, classes))."""
        out = []
        for x in self._batches():
            x = x.to(self.runtime.device, non_blocking=True).contiguous(memory_format=self._mf)
            with self.runtime.autocast():
                out.append(forward(x).float())
        return torch.cat(out, dim=dim).cpu()

    def score(self, out: torch.Tensor) -> tuple[dict[str, float], np.ndarray]:
        """({top1, top5, loss}, per-example correctness) of one model's (N, classes) logits."""
        k = min(5, out.shape[1])
        topk = out.topk(k, dim=1).indices
        hit = topk == self.labels[:, None]
        correct = hit[:, 0]
        metrics = {
            "top1": 100.0 * correct.float().mean().item(),
            "top5": 100.0 * hit.any(dim=1).float().mean().item(),
            "loss": torch.nn.functional.cross_entropy(out, self.labels).item(),
        }
        return metrics, correct.numpy()

    def __call__(self, model) -> tuple[dict[str, float], np.ndarray]:
        model.eval()
        return self.score(self.logits(model))


@dataclasses.dataclass
class TrialParts:
    """Everything one trial trains and evaluates with, as :func:`build_trial` made it."""

    runtime: TrialRuntime
    model: torch.nn.Module
    loader: Any
    sampler: Any
    normalize: Callable[[torch.Tensor], torch.Tensor] | None  # the batched ToTensor+Normalize, or None
    mixup: Any
    criterion: Any
    optimizer: Any
    scheduler: Any
    scaler: Any
    evaluators: dict[str, _Evaluator]
    loader_gen: torch.Generator
    steps_per_epoch: int


def build_train_loader(config: Mapping[str, Any], data: DatasetSplits, runtime: TrialRuntime, loader_gen: torch.Generator):
    """(loader, sampler, batch transform or None, updates per epoch) of one trial's training
    data: order by ``data_seed``, augmentation drawn from the streams ``aug_seed`` seeded.

    Where the augmentation is batched (``augment_impl``: see :func:`_batch_augment`) the loader
    yields uint8 batches and the batch transform augments and normalises them on the trial's device;
    otherwise each sample goes through timm's PIL transform (with :mod:`rsb_tune.augment.transforms`'s
    cheaper calls: the same images, bit for bit) and the batch transform only normalises."""
    from rsb_tune.augment.transforms import fast_pil_ops

    train_tf, _ = build_transforms(config)
    batched = _batch_augment(config, data, train_tf, runtime.device.type)
    runtime.augment = "pil" if batched is None else "batch"
    if batched is not None:
        train_ds, collate, normalize = DecodedBatches(data.train), _as_batch, batched
    else:
        # The per-sample ToTensor+Normalize tail moves to one op per batch.
        train_tf, normalize = defer_normalize(fast_pil_ops(train_tf))
        train_ds, collate = SplitDataset(data.train, train_tf), None
    sampler = build_sampler(train_ds, config, num_replicas=runtime.world_size, rank=runtime.rank)
    loader = torch.utils.data.DataLoader(
        train_ds,
        batch_size=config["batch_size"] // runtime.world_size,  # the global batch stays batch_size
        sampler=sampler,
        num_workers=config["workers"],
        collate_fn=collate,
        drop_last=True,
        generator=loader_gen,
        pin_memory=runtime.device.type == "cuda",
        persistent_workers=config["workers"] > 0,
    )
    if len(loader) == 0:
        raise ValueError(f"batch_size {config['batch_size']} exceeds the {len(sampler)} training samples of an epoch")
    return loader, sampler, normalize, len(loader)


def _batch_augment(config: Mapping[str, Any], data: DatasetSplits, train_tf, device_type: str):
    """The batched augmentation for this trial, or None for the per-sample path.
    ``augment_impl``: ``auto`` batches where it can (on a CPU through the compiled kernel of
    rsb_tune.augment.kernels, on CUDA through torch ops), ``batch`` always (an error where it
    cannot), ``pil`` never; plans made before the key existed stay per sample."""
    from rsb_tune.augment.batched import NotBatchable, batch_augment_for

    impl = config.get("augment_impl", "pil")
    if impl == "pil":
        return None
    try:
        images = data.train.images
        if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[3] != 3:
            raise NotBatchable("the training images are not decoded to one size (streamed, or of several sizes)")
        augment = batch_augment_for(train_tf, images.shape[1:3])
        if impl == "auto" and device_type == "cpu" and not augment.compiled:
            return None  # torch ops on a CPU cost more than the per-sample path
        return augment
    except NotBatchable as e:
        if impl == "batch":
            raise ValueError(f"augment_impl 'batch': {e}; use augment_impl auto or pil") from None
        return None


def warm_cpu_kernels(config: Mapping[str, Any], data: DatasetSplits) -> None:
    """Compile, or load from numba's disk cache, the compiled CPU loops a trial of ``config``
    runs (the batched augmentation of :mod:`rsb_tune.augment.kernels`, the flat LAMB step of
    :mod:`rsb_tune.training.optim_kernels`), in this process, without touching its random streams.
    A study's driver calls it before the trials start, so that no trial compiles: compiling
    costs a trial ~15 s and ~0.15 GB more peak memory, in every trial process that starts on
    a machine whose cache is empty (both at once, on two cores). A no-op for CUDA trials."""
    from rsb_tune.training.optim import create_optimizer

    if config["device"] == "cuda" or (config["device"] == "auto" and torch.cuda.is_available()):
        return
    try:
        augment = _batch_augment(config, data, build_transforms(config)[0], "cpu")
    except ValueError:  # augment_impl 'batch' where it cannot: the trial itself says so
        augment = None
    if augment is not None and augment.compiled:
        state = np.random.get_state()
        augment.augment_compiled(np.ascontiguousarray(data.train.images[:2]), np.arange(2))
        np.random.set_state(state)
    with torch.random.fork_rng(devices=[]):
        model = torch.nn.Linear(2, 2)
    optimizer = create_optimizer(model, opt=config["opt"], lr=config["lr_resolved"], weight_decay=config["weight_decay"], momentum=config["momentum"])
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()  # a LAMB: the flat step's loops


def _as_batch(batch):
    """collate_fn of :class:`DecodedBatches`: its batch is already stacked."""
    return batch


def build_evaluators(config: Mapping[str, Any], data: DatasetSplits, runtime: TrialRuntime) -> dict[str, _Evaluator]:
    _, eval_tf = build_transforms(config)
    evaluators = {"val": _Evaluator(data.val, eval_tf, runtime, config["eval_batch_size"], config["workers"])}
    if data.v2 is not None:
        evaluators["v2"] = _Evaluator(data.v2, eval_tf, runtime, config["eval_batch_size"], config["workers"])
    return evaluators


def build_scheduler(optimizer, config: Mapping[str, Any], steps_per_epoch: int):
    """timm's create_scheduler_v2 for the trial, stepped per update."""
    from timm.scheduler import create_scheduler_v2

    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched=config["sched"],
        num_epochs=config["epochs"],
        warmup_epochs=config["warmup_epochs"],
        warmup_lr=config["warmup_lr"],
        min_lr=config["min_lr"],
        step_on_epochs=False,
        updates_per_epoch=steps_per_epoch,
    )
    return scheduler


def build_trial(config: Mapping[str, Any], data: DatasetSplits) -> TrialParts:
    """Build one trial from its resolved config: the model (weights seeded by ``model_seed``),
    the training pipeline (order by ``data_seed``, augmentation by ``aug_seed``), loss,
    optimizer, schedule and evaluators. Sets this process's torch threads to the trial's."""
    from rsb_tune.training.optim import create_optimizer

    runtime = TrialRuntime(config)
    torch.set_num_threads(runtime.threads)
    on_cuda = runtime.device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = False  # keep runs reproducible; timm's train.py turns it on

    model = initial_model(config, data.num_classes).to(runtime.device)
    runtime.check_model(model, config["img_size"])
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if runtime.distributed:  # same init on every rank (model_seed); DDP averages the gradients
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[runtime.device.index] if on_cuda else None)
    # each rank draws its own augmentations; rank 0 of a DDP trial draws what a 1-worker trial does
    loader_gen = _seed_augmentation(config["aug_seed"] + runtime.rank)
    loader, sampler, normalize, steps_per_epoch = build_train_loader(config, data, runtime, loader_gen)
    evaluators = build_evaluators(config, data, runtime)

    mixup = build_mixup(config, data.num_classes)
    criterion = build_criterion(config, mixup is not None)
    # timm's create_optimizer_v2; LAMB gets the multi-tensor step (rsb_tune.training.optim), the rest stay timm's
    optimizer = create_optimizer(model, opt=config["opt"], lr=config["lr_resolved"], weight_decay=config["weight_decay"], momentum=config["momentum"])
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    scaler = torch.amp.GradScaler(enabled=runtime.amp == "fp16")
    return TrialParts(
        runtime=runtime,
        model=model,
        loader=loader,
        sampler=sampler,
        normalize=normalize,
        mixup=mixup,
        criterion=criterion,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        evaluators=evaluators,
        loader_gen=loader_gen,
        steps_per_epoch=steps_per_epoch,
    )


def train_one_epoch(parts: TrialParts, epoch: int, num_updates: int) -> tuple[torch.Tensor, int, int]:
    """One pass over the training data. Returns (the sum of the batch losses as a 0-d tensor on
    the trial's device, images seen, updates done so far). Nothing in the loop waits for the
    device; the caller syncs once, when it reads the loss."""
    rt = parts.runtime
    mf = rt.memory_format
    model, optimizer, scheduler, scaler = parts.model, parts.optimizer, parts.scheduler, parts.scaler
    model.train()
    parts.sampler.set_epoch(epoch)
    loss_sum = torch.zeros((), device=rt.device)
    seen = 0
    for x, y in parts.loader:
        x = x.to(rt.device, non_blocking=True)  # uint8 when normalize is set: a quarter of the bytes
        if parts.normalize is not None:
            x = parts.normalize(x)
        x = x.contiguous(memory_format=mf)
        y = y.to(rt.device, non_blocking=True)
        if parts.mixup is not None:
            x, y = parts.mixup(x, y)
        with rt.autocast():
            loss = parts.criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        num_updates += 1
        if scheduler is not None:
            scheduler.step_update(num_updates=num_updates)
        loss_sum += loss.detach().float()
        seen += x.shape[0]
    return loss_sum, seen, num_updates


def evaluate(parts: TrialParts) -> dict[str, tuple[dict[str, float], np.ndarray]]:
    """Each split's ({top1, top5, loss}, per-example correctness) for the model as it is."""
    return {name: evaluator(parts.model) for name, evaluator in parts.evaluators.items()}


def epoch_result(*, epoch: int, train_loss: float, lr: float, evaluated, splits, final: bool, epoch_time_s: float, images_per_s: float, runtime: Mapping[str, Any]) -> dict[str, Any]:
    """One epoch's report: the training loss, each split's metrics (NaN when the loss is not
    finite: the trial diverged), the final epoch's per-example correctness, timing, status and
    where it ran (``runtime_*``)."""
    diverged = not math.isfinite(train_loss)
    metrics: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
    if diverged:
        nan = float("nan")
        metrics.update({f"{name}_{k}": nan for name in splits for k in ("top1", "top5", "loss")})
    else:
        for name, (split_metrics, correct) in evaluated.items():
            metrics.update({f"{name}_{k}": v for k, v in split_metrics.items()})
            if final:
                metrics[f"{name}_correct"] = pack_correct(correct)
    metrics.update(
        epoch_time_s=epoch_time_s,
        images_per_s=images_per_s,
        status=C.DIVERGED if diverged else (C.OK if final else C.RUNNING),
        **{f"runtime_{k}": v for k, v in runtime.items()},
    )
    return metrics


def train(
    config: Mapping[str, Any],
    report: Reporter,
    data: DatasetSplits,
    *,
    resume: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one trial. ``report(metrics, checkpoint=state_or_None)`` is called after every epoch;
    ``checkpoint`` is a picklable dict every ``checkpoint_every`` epochs and at the end.
    ``resume`` is such a dict: training continues after its epoch with every state restored.

    Returns the last epoch's metrics with ``status`` "ok" or "diverged" (non-finite loss).
    """
    _return_free_heap()
    parts = build_trial(config, data)
    runtime, model, optimizer, scheduler, scaler = parts.runtime, parts.model, parts.optimizer, parts.scheduler, parts.scaler

    net = model.module if runtime.distributed else model  # checkpoints hold the unwrapped weights
    start_epoch, num_updates = 0, 0
    if resume is not None:
        net.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume["scheduler"])
        scaler.load_state_dict(resume["scaler"])
        start_epoch, num_updates = resume["epoch"], resume["num_updates"]
        rng = resume["rng"]
        _set_rng_state(rng[runtime.rank] if isinstance(rng, list) else rng, parts.loader_gen)

    metrics: dict[str, Any] = {}
    for epoch in range(start_epoch, config["epochs"]):
        t0 = time.perf_counter()
        loss_sum, seen, num_updates = train_one_epoch(parts, epoch, num_updates)
        if runtime.distributed:  # mean loss and images over all ranks
            totals = runtime.all_reduce_sum(torch.stack([loss_sum, torch.tensor(float(seen), device=loss_sum.device)]))
            loss_sum, seen = totals[0] / runtime.world_size, int(totals[1].item())
        train_loss = (loss_sum / parts.steps_per_epoch).item()  # the one host sync of the epoch
        train_time = time.perf_counter() - t0
        if scheduler is not None:
            scheduler.step(epoch + 1)
        lr = optimizer.param_groups[0]["lr"]
        diverged = not math.isfinite(train_loss)
        final = diverged or epoch + 1 == config["epochs"]
        evaluated = None if diverged else evaluate(parts)  # nothing to evaluate: the weights are not finite
        metrics = epoch_result(
            epoch=epoch + 1,
            train_loss=train_loss,
            lr=lr,
            evaluated=evaluated,
            splits=parts.evaluators,
            final=final,
            epoch_time_s=time.perf_counter() - t0,
            images_per_s=seen / train_time if train_time > 0 else float("nan"),
            runtime={**runtime.as_dict(), "global_batch": parts.loader.batch_size * runtime.world_size},
        )
        checkpoint = None
        if not diverged and (final or (epoch + 1) % config["checkpoint_every"] == 0):
            rng = _rng_state(parts.loader_gen)
            if runtime.distributed:  # every rank's streams, so that each resumes its own
                import torch.distributed as dist

                gathered: list = [None] * runtime.world_size
                dist.all_gather_object(gathered, rng)
                rng = gathered
            checkpoint = {
                "epoch": epoch + 1,
                "num_updates": num_updates,
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "scaler": scaler.state_dict(),
                "rng": rng,
            }
        report(metrics, checkpoint=checkpoint)
        if diverged:
            break
    return metrics
