"""K seeds of one config trained together in one process (``pack: K``): PyTorch + timm, no Ray.

A pack is K trials of a study that differ only in their seeds. Their K models are stacked
(:func:`torch.func.stack_module_state`: every parameter and buffer gets a leading dim K) and
run as one batched model (:func:`torch.func.functional_call` under :func:`torch.func.vmap`, in
which a convolution whose weights and inputs are both batched becomes one grouped
convolution). What makes each seed itself stays per seed and outside the batched forward:

- its weights, built from its ``model_seed`` exactly as an unpacked trial builds them;
- its loader (order by ``data_seed``) and its augmentation, mixup/cutmix and drop-path draws
  (``aug_seed``): the seed's own global RNG states are swapped in while it draws
  (:meth:`_Seed.drawing`), so it draws what an unpacked run of it draws, in the same order.
  Drop-path masks are drawn there and enter the batched forward as buffers, which runs under
  ``vmap(randomness="error")``: no other random op can slip into it unseen;
- its BatchNorm running statistics (stacked buffers, updated in place slice by slice);
- its optimizer state and every norm the optimizer takes (:class:`rsb_tune.training.optim.ForeachLamb`
  with ``stacked=True``: global gradient clipping and trust ratios per seed; elementwise
  optimizers are per seed on stacked tensors as they are). The loss is the *sum* of the seeds'
  losses, so each seed's gradient is its unpacked gradient;
- its own report each epoch; a seed whose epoch loss is not finite is reported ``diverged``
  and dropped from the pack, and the others go on.

A pack's checkpoint holds the whole pack: stacked weights, buffers and optimizer state, the
schedule, and each seed's RNG states. :func:`select` keeps some of its seeds (a seed that
diverged; a retried pack runs only its unfinished seeds). Packed and unpacked runs of a seed
agree to float rounding, not bit for bit: grouped and separate convolutions round differently
(``tests/test_packed.py`` checks 1e-5 over the first updates).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from typing import Any, Callable, Mapping, Protocol, Sequence

import torch

from rsb_tune.data.types import DatasetSplits
from rsb_tune.training.trial import (
    TrialRuntime,
    _return_free_heap,
    _seed_augmentation,
    build_criterion,
    build_evaluators,
    build_mixup,
    build_model,
    initial_model,
    build_scheduler,
    build_train_loader,
    epoch_result,
    global_rng_state,
    set_global_rng_state,
)

__all__ = ["train_pack", "PackReporter", "select", "check_optimizer", "ELEMENTWISE_OPTIMIZERS"]

# Optimizers whose step is elementwise: on stacked tensors they are K separate optimizers.
# LAMB (every timm variant) takes norms and is stacked through ForeachLamb(stacked=True).
ELEMENTWISE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop, torch.optim.NAdam, torch.optim.RAdam, torch.optim.Adagrad)


class PackReporter(Protocol):
    def __call__(self, results: dict[str, dict[str, Any]], *, checkpoint: dict | None = None) -> None: ...


@dataclasses.dataclass
class _Seed:
    """One seed of a pack: its trial, its training data and its random streams."""

    trial_id: str
    config: Mapping[str, Any]
    loader: Any
    sampler: Any
    normalize: Callable[[torch.Tensor], torch.Tensor] | None
    mixup: Any
    loader_gen: torch.Generator
    rng: dict[str, Any]  # its global RNG states while another seed draws

    @contextlib.contextmanager
    def drawing(self):
        """The process's global streams are this seed's inside the block."""
        set_global_rng_state(self.rng)
        try:
            yield
        finally:
            self.rng = global_rng_state()

    def rng_record(self) -> dict[str, Any]:
        return {**self.rng, "loader": self.loader_gen.get_state()}


class _MaskedDropPath(torch.nn.Module):
    """timm's DropPath with its mask given (a buffer set per batch) instead of drawn."""

    def __init__(self, drop_prob: float):
        super().__init__()
        self.drop_prob = drop_prob
        self.register_buffer("mask", torch.empty(0), persistent=False)

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        return x * self.mask


@dataclasses.dataclass(frozen=True)
class _DropSpec:
    """A drop-path call of the forward, in the order the forward makes them."""

    name: str  # the module's name; its mask is the buffer ``<name>.mask``
    ndim: int
    dtype: torch.dtype
    keep: float
    scale: bool

    def draw(self, batch: int, device: torch.device) -> torch.Tensor:
        """timm's ``drop_path`` draw: ``x.new_empty((B, 1, ...)).bernoulli_(keep)``, scaled."""
        mask = torch.empty((batch,) + (1,) * (self.ndim - 1), dtype=self.dtype, device=device).bernoulli_(self.keep)
        if self.keep > 0.0 and self.scale:
            mask.div_(self.keep)
        return mask


def _drop_specs(model: torch.nn.Module, example: torch.Tensor, runtime: TrialRuntime) -> list[_DropSpec]:
    """The drop-path calls of a training forward, in order, found by one eval forward with
    hooks (eval draws nothing and changes no buffer)."""
    from timm.layers import DropPath

    calls: list[tuple[str, int, torch.dtype]] = []
    modules = {name: m for name, m in model.named_modules() if isinstance(m, DropPath) and m.drop_prob > 0}
    hooks = [m.register_forward_pre_hook(lambda mod, args, name=name: calls.append((name, args[0].dim(), args[0].dtype))) for name, m in modules.items()]
    training = model.training
    try:
        model.eval()
        with torch.no_grad(), runtime.autocast():
            model(example)
    finally:
        model.train(training)
        for h in hooks:
            h.remove()
    names = [name for name, _, _ in calls]
    if len(set(names)) != len(names):
        raise ValueError("pack: a drop-path module runs more than once per forward; such a model cannot be packed")
    return [_DropSpec(name, nd, dt, 1.0 - modules[name].drop_prob, modules[name].scale_by_keep) for name, nd, dt in calls]


def _skeleton(model: torch.nn.Module, specs: Sequence[_DropSpec]) -> torch.nn.Module:
    """The module ``functional_call`` runs: the model's structure, its drop paths masked, on meta."""
    base = copy.deepcopy(model)
    for spec in specs:
        parent_name, _, child = spec.name.rpartition(".")
        parent = base.get_submodule(parent_name) if parent_name else base
        setattr(parent, child, _MaskedDropPath(1.0 - spec.keep))
    return base.to("meta")


def _pack_optimizer(model: torch.nn.Module, params: Mapping[str, torch.Tensor], config: Mapping[str, Any]):
    """(the pack's optimizer, the parameter names in its state's order): the trial's optimizer
    (timm's factory, its parameter groups and hyperparameters) over the stacked tensors."""
    import inspect

    from rsb_tune.training.optim import ForeachLamb, create_optimizer

    single = create_optimizer(model, opt=config["opt"], lr=config["lr_resolved"], weight_decay=config["weight_decay"], momentum=config["momentum"])
    name_of = {id(p): n for n, p in model.named_parameters()}
    order = [name_of[id(p)] for g in single.param_groups for p in g["params"]]
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [params[name_of[id(p)]] for p in g["params"]]} for g in single.param_groups]
    cls = type(single)
    names = set(inspect.signature(cls.__init__).parameters) - {"self", "params", "stacked"}
    kwargs = {k: v for k, v in single.defaults.items() if k in names}
    if cls is ForeachLamb:
        for g in groups:
            g["stacked"] = True
        return ForeachLamb(groups, stacked=True, **kwargs), order
    if cls in ELEMENTWISE_OPTIMIZERS:
        return cls(groups, **kwargs), order
    raise ValueError(f"pack: optimizer {config['opt']!r} ({cls.__name__}) takes norms over whole tensors and has no per-seed form; packable: LAMB and elementwise optimizers")


def check_optimizer(config: Mapping[str, Any]) -> None:
    """ValueError unless the trial's optimizer has a per-seed form on stacked tensors."""
    _pack_optimizer(torch.nn.Linear(1, 1, bias=False), {"weight": torch.zeros(1, 1, 1, requires_grad=True)}, config)


def select(state: Mapping[str, Any], trial_ids: Sequence[str]) -> dict[str, Any]:
    """The checkpoint of a pack reduced to ``trial_ids`` (a subset of its ``pack``, any order)."""
    members = list(state["pack"])
    index = torch.tensor([members.index(t) for t in trial_ids])
    model = {n: t.index_select(0, index.to(t.device)) for n, t in state["model"].items()}
    shapes = {n: t.shape for n, t in state["model"].items()}
    names = state["param_names"]

    def per_seed(i: int, v: Any) -> Any:  # a state tensor shaped like its stacked parameter
        if torch.is_tensor(v) and v.dim() > 0 and v.shape == shapes[names[i]]:
            return v.index_select(0, index.to(v.device))
        return v

    opt = state["optimizer"]
    optimizer = {**opt, "state": {i: {k: per_seed(int(i), v) for k, v in s.items()} for i, s in opt["state"].items()}}
    return {**state, "pack": list(trial_ids), "model": model, "optimizer": optimizer, "rng": {t: state["rng"][t] for t in trial_ids}}


class _Stack:
    """The batched model of a pack's live seeds: stacked weights and buffers, the forward under
    vmap, the optimizer and schedule over the stacked tensors."""

    def __init__(self, model: torch.nn.Module, specs: Sequence[_DropSpec], config: Mapping[str, Any], steps_per_epoch: int, *, models=None, state=None):
        from torch.func import functional_call, stack_module_state, vmap

        if models is not None:  # fresh: each seed's own init
            params, buffers = stack_module_state(models)
        else:
            k = len(state["pack"])
            device = next(model.parameters()).device
            params = {n: state["model"][n].to(device).clone().requires_grad_() for n, _ in model.named_parameters()}
            buffers = {n: (state["model"][n] if n in state["model"] else b.unsqueeze(0).expand(k, *b.shape)).to(device).clone() for n, b in model.named_buffers()}
        self.params, self.buffers = params, buffers
        self.persistent = set(model.state_dict())
        self.base = _skeleton(model, specs)
        self.mask_names = [f"{s.name}.mask" for s in specs]
        self.optimizer, self.param_names = _pack_optimizer(model, params, config)
        self.scheduler = build_scheduler(self.optimizer, config, steps_per_epoch)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(state["scheduler"])

        def forward(p, b, x):
            return functional_call(self.base, (p, b), (x,))

        self._train = vmap(forward, in_dims=(0, 0, 0), randomness="error")
        self._eval = vmap(forward, in_dims=(0, 0, None), randomness="error")

    def train_forward(self, x: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        self.base.train()
        return self._train(self.params, {**self.buffers, **dict(zip(self.mask_names, masks))}, x)

    def eval_forward(self, x: torch.Tensor) -> torch.Tensor:
        self.base.eval()
        return self._eval(self.params, self.buffers, x)

    def state(self) -> dict[str, Any]:
        model = {n: t.detach() for n, t in {**self.params, **self.buffers}.items() if n in self.persistent}
        return {
            "model": model,
            "optimizer": self.optimizer.state_dict(),
            "param_names": self.param_names,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }


class _PackedLoss:
    """The per-seed losses (K,) of batched outputs and targets: the criterion under vmap, or
    seed by seed where it cannot be vmapped (in-place target building without mixup)."""

    def __init__(self, criterion):
        self.criterion = criterion
        self.vmapped: bool | None = None

    def __call__(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from torch.func import vmap

        if self.vmapped is not False:
            try:
                losses = vmap(self.criterion, randomness="error")(out, y)
                self.vmapped = True
                return losses
            except RuntimeError:
                if self.vmapped:
                    raise
                self.vmapped = False
        return torch.stack([self.criterion(o, t) for o, t in zip(out, y)])


def _check_packable(config: Mapping[str, Any], runtime: TrialRuntime) -> None:
    if runtime.distributed or config["workers_per_trial"] != 1:
        raise ValueError("pack: a packed trial runs in one process (workers_per_trial must be 1)")
    if runtime.amp == "fp16":
        raise ValueError("pack: fp16 needs one loss scaler per seed; use amp bf16 or off with a pack")


def train_pack(configs: Mapping[str, Mapping[str, Any]], report: PackReporter, data: DatasetSplits, *, resume: Mapping[str, Any] | None = None, pack_id: str | None = None) -> dict[str, dict[str, Any]]:
    """Train the trials ``configs`` (id -> resolved config; they differ only in their seeds) as
    one pack. ``report({id: metrics}, checkpoint=state_or_None)`` is called after every epoch
    with each live seed's metrics (those of :func:`rsb_tune.training.trial.train`, plus ``pack_id`` and
    ``runtime_pack``); ``checkpoint`` holds the whole pack every ``checkpoint_every`` epochs, when
    a seed is dropped, and at the end. ``resume``: such a checkpoint; its ``pack`` says which
    seeds are still live (the others of ``configs`` have finished).

    Returns each seed's last metrics.
    """
    _return_free_heap()
    ids = [t for t in configs if resume is None or t in resume["pack"]]
    if not ids:
        return {}
    first = configs[ids[0]]
    runtime = TrialRuntime(first)
    runtime.channels_last = False  # the batched forward runs in (K, B, C, H, W), contiguous
    _check_packable(first, runtime)
    torch.set_num_threads(runtime.threads)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = False

    # Each seed as an unpacked trial builds it: weights (model_seed), then its streams (aug_seed) and loader.
    models, seeds = [], []
    for tid in ids:
        cfg = configs[tid]
        if resume is None or not models:
            models.append(initial_model(cfg, data.num_classes).to(runtime.device))
        gen = _seed_augmentation(cfg["aug_seed"])
        loader, sampler, normalize, steps = build_train_loader(cfg, data, runtime, gen)
        mixup = build_mixup(cfg, data.num_classes)
        seeds.append(_Seed(tid, cfg, loader, sampler, normalize, mixup, gen, global_rng_state()))
    if resume is not None:
        resume = select(resume, ids)
        for seed in seeds:
            rng = resume["rng"][seed.trial_id]
            seed.loader_gen.set_state(rng["loader"])
            seed.rng = {k: v for k, v in rng.items() if k != "loader"}
    runtime.check_model(models[0], first["img_size"])  # the same architecture for every seed of the pack
    evaluators = build_evaluators(first, data, runtime)
    criterion = _PackedLoss(build_criterion(first, seeds[0].mixup is not None))
    example = torch.zeros(2, 3, first["img_size"], first["img_size"], device=runtime.device)
    specs = _drop_specs(models[0], example, runtime)
    stack = _Stack(models[0], specs, first, steps, models=models if resume is None else None, state=resume)
    del models

    start_epoch, num_updates = (resume["epoch"], resume["num_updates"]) if resume is not None else (0, 0)
    batch = first["batch_size"]
    last: dict[str, dict[str, Any]] = {}
    for epoch in range(start_epoch, first["epochs"]):
        t0 = time.perf_counter()
        loss_sum, num_updates = _train_one_epoch(stack, seeds, specs, criterion, runtime, epoch, num_updates, steps)
        train_loss = (loss_sum / steps).tolist()  # the one host sync of the epoch
        train_time = time.perf_counter() - t0
        if stack.scheduler is not None:
            stack.scheduler.step(epoch + 1)
        lr = stack.optimizer.param_groups[0]["lr"]
        final = epoch + 1 == first["epochs"]
        finite = [math.isfinite(v) for v in train_loss]
        logits = {name: ev.logits(stack.eval_forward, dim=1) for name, ev in evaluators.items()} if any(finite) else {}
        elapsed = time.perf_counter() - t0
        results = {}
        for k, seed in enumerate(seeds):
            evaluated = {name: evaluators[name].score(out[k]) for name, out in logits.items()} if finite[k] else None
            results[seed.trial_id] = {
                **epoch_result(
                    epoch=epoch + 1,
                    train_loss=train_loss[k],
                    lr=lr,
                    evaluated=evaluated,
                    splits=evaluators,
                    final=final,
                    epoch_time_s=elapsed,
                    images_per_s=steps * batch / train_time if train_time > 0 else float("nan"),
                    runtime={**runtime.as_dict(), "global_batch": batch, "pack": len(seeds)},
                ),
                "pack_id": pack_id,
            }
        live = [s for s, ok in zip(seeds, finite) if ok]
        dropped = len(live) < len(seeds)
        checkpoint = None
        if live and (final or (epoch + 1) % first["checkpoint_every"] == 0 or dropped):
            checkpoint = {"epoch": epoch + 1, "num_updates": num_updates, "pack": [s.trial_id for s in seeds], **stack.state(), "scaler": {}, "rng": {s.trial_id: s.rng_record() for s in seeds}}
            if dropped:  # the pack's state without the diverged seeds: reported, and trained on
                checkpoint = select(checkpoint, [s.trial_id for s in live])
        report(results, checkpoint=checkpoint)
        last.update(results)
        if not live or final:
            break
        if dropped:  # the diverged seeds leave the pack; the others go on from here
            base = build_model(live[0].config, data.num_classes).to(runtime.device)
            stack = _Stack(base, specs, first, steps, state=checkpoint)
            seeds = live
    return last


def _train_one_epoch(stack: _Stack, seeds: Sequence[_Seed], specs: Sequence[_DropSpec], criterion: _PackedLoss, runtime: TrialRuntime, epoch: int, num_updates: int, steps: int) -> tuple[torch.Tensor, int]:
    """One pass of every seed over its training data, batched: (the per-seed sums of the batch
    losses (K,) on the device, updates done so far)."""
    device = runtime.device
    iters = []
    for seed in seeds:
        seed.sampler.set_epoch(epoch)
        with seed.drawing():
            iters.append(iter(seed.loader))
    loss_sum = torch.zeros(len(seeds), device=device)
    for _ in range(steps):
        xs, ys, masks = [], [], []
        for seed, it in zip(seeds, iters):
            with seed.drawing():  # what the unpacked trial draws for this batch, in its order
                x, y = next(it)
                x = x.to(device, non_blocking=True)
                if seed.normalize is not None:
                    x = seed.normalize(x)
                y = y.to(device, non_blocking=True)
                if seed.mixup is not None:
                    x, y = seed.mixup(x, y)
                masks.append([spec.draw(x.shape[0], device) for spec in specs])
            xs.append(x)
            ys.append(y)
        x, y = torch.stack(xs), torch.stack(ys)
        stacked_masks = [torch.stack([m[j] for m in masks]) for j in range(len(specs))]
        with runtime.autocast():
            losses = criterion(stack.train_forward(x, stacked_masks), y)
        stack.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # summed: each seed's gradient is its own loss's
        stack.optimizer.step()
        num_updates += 1
        if stack.scheduler is not None:
            stack.scheduler.step_update(num_updates=num_updates)
        loss_sum += losses.detach().float()
    return loss_sum, num_updates
