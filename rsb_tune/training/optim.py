"""Optimizers for the trial: timm's, with a multi-tensor step where one applies.

:func:`create_optimizer` is ``timm.optim.create_optimizer_v2`` (same parameter groups: no
weight decay for biases and norm weights; same hyperparameters and variant flags), after which
the optimizer's class is looked up in :data:`MULTI_TENSOR`: a timm class listed there is rebuilt
as its multi-tensor counterpart over the same groups. Every other optimizer stays timm's.

:class:`ForeachLamb` is ``timm.optim.Lamb`` (a subclass: same constructor, parameter groups,
state keys and ``state_dict`` layout, so checkpoints of either load into the other) whose step
runs each part of LAMB as one ``torch._foreach_*`` op over the tensors of *all* groups at once:
the global gradient-norm clipping (``max_grad_norm``), the moments (``grad_averaging``), the
bias correction (folded into scalars, as timm's own multi-tensor path does), weight decay
(coupled, or ``decoupled_decay`` with ``corrected_weight_decay``), the caution mask, and the
per-tensor trust ratios (``trust_clip``; skipped for tensors without weight decay unless
``always_adapt``). On CPU timm runs its per-tensor Python loop (its multi-tensor path is for
CUDA); the results agree with it to float rounding (``tests/test_optim.py``: 1e-6 relative
over 50 steps). With ``foreach=False`` on any group, the whole step is timm's own.

On a CPU, where the tensors allow it (not stacked, no caution, float32 or float64, dense
layouts, every tensor with a gradient, groups sharing betas, eps and bias correction: every
timm factory's groups on a plain model), the step runs on a flat layout (:class:`_FlatLayout`):
each parameter and both of its moments become views into one buffer each, the elementwise part
of LAMB is one compiled loop over them (:mod:`rsb_tune.training.optim_kernels`), and only the norms stay
torch ops (timm's own float32 norms, which the trajectory is sensitive to). On the default model
of this project (47 tensors, 0.32 M floats, one thread) a step takes 1.15 ms against 2.12 ms
for the multi-tensor step and 3.0 ms for timm's; the results agree with timm's as closely
(``tests/test_optim.py``).

``stacked=True`` is for K seeds packed into one set of tensors (``torch.func`` stacking): dim 0
of every parameter is the seed, and the global gradient norm, its clip factor, the caution
mask's mean and the trust ratios are computed per seed, so the step equals K separate timm
``Lamb`` steps on the K slices.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Mapping

import numpy as np
import torch
from timm.optim import Lamb, create_optimizer_v2  # this module is imported by the trial, inside build_trial

__all__ = ["ForeachLamb", "MULTI_TENSOR", "create_optimizer", "multi_tensor"]


class ForeachLamb(Lamb):
    """``timm.optim.Lamb`` with the multi-tensor step of this module (see its docstring), and
    ``stacked`` for K seeds packed along dim 0 of every parameter."""

    def __init__(self, params, *args, stacked: bool = False, **kwargs):
        super().__init__(params, *args, **kwargs)
        self.defaults["stacked"] = stacked
        for group in self.param_groups:
            group.setdefault("stacked", stacked)
        self._flat: _FlatLayout | None = None

    def __setstate__(self, state):
        # also what load_state_dict calls: the loaded moments are new tensors, so the flat
        # layout (if any) is rebuilt around them at the next step
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("stacked", False)
        self._flat = None

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        self._flat = None

    def _timm_step(self) -> bool:
        """Whether this step is timm's own: a group asks for it (``foreach=False``), a tensor lr,
        sparse gradients, or half-precision parameters (timm corrects their bias differently)."""
        for group in self.param_groups:
            if group.get("foreach") is False or torch.is_tensor(group["lr"]):
                return True
            for p in group["params"]:
                if p.grad is not None and (p.grad.is_sparse or p.dtype not in (torch.float32, torch.float64)):
                    return True
        return False

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        flat = self._flat_layout()
        if flat is not None:
            flat.step(self)
        elif self._timm_step():
            if any(g["stacked"] for g in self.param_groups):
                raise RuntimeError("ForeachLamb(stacked=True) has no per-tensor fallback (foreach=False, a tensor lr, sparse or half-precision tensors)")
            super().step()
        else:
            _foreach_lamb_step(self)
        return loss

    def _flat_layout(self) -> _FlatLayout | None:
        """The flat layout for this step (on a CPU), (re)built when the tensors allow one, else None."""
        if any(g.get("foreach") is False or torch.is_tensor(g["lr"]) for g in self.param_groups):
            return None  # timm's own step
        if any(p.grad is None or p.grad.is_sparse for g in self.param_groups for p in g["params"]):
            return None  # timm skips a tensor without a gradient (no state, no update), as the multi-tensor step does
        if self._flat is None or not self._flat.current(self):
            self._flat = _FlatLayout.build(self)
        return self._flat


# ------------------------------------------------------------------ the multi-tensor LAMB step


def _seed_view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-seed vector (K,) shaped to broadcast over a stacked tensor (K, ...)."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _norms(tensors: list[torch.Tensor], stacked: bool) -> list[torch.Tensor]:
    """The L2 norm of each tensor: 0-d, or (K,) per seed when ``stacked``."""
    if not stacked:
        return list(torch._foreach_norm(tensors))
    return [torch.linalg.vector_norm(t, dim=tuple(range(1, t.dim()))) if t.dim() > 1 else t.abs() for t in tensors]


def _per_tensor(values: list[torch.Tensor], like: list[torch.Tensor], stacked: bool) -> list[torch.Tensor]:
    return [_seed_view(v, t) for v, t in zip(values, like)] if stacked else values


def _global_clip(optimizer, grads: list[torch.Tensor], stacked: bool) -> torch.Tensor | None:
    """timm's ``Lamb._get_clip_grad_norm``: max(1, ||all grads|| / max_grad_norm), per seed when
    stacked. The threshold is the optimizer's default, as in timm (not a group's)."""
    max_grad_norm = optimizer.defaults["max_grad_norm"]
    if max_grad_norm is None or not grads:
        return None
    norms = _norms(grads, stacked)
    total = torch.linalg.vector_norm(torch.stack(norms), dim=0)
    return (total / max_grad_norm).clamp_(min=1.0)


def _foreach_lamb_step(optimizer) -> None:
    """One LAMB step over every group of ``optimizer`` (a timm ``Lamb``), timm's arithmetic."""
    from timm.optim._helpers import _init_scalar

    stacked = bool(optimizer.param_groups and optimizer.param_groups[0].get("stacked"))
    # Gather the tensors with a gradient, group by group; each group's scalars stay its own.
    params, grads, exp_avgs, exp_avg_sqs = [], [], [], []
    spans: list[tuple[dict, int, int]] = []  # (group, start, end) into the flat lists
    for group in optimizer.param_groups:
        if "step" not in group:
            group["step"] = _init_scalar(device="cpu")
        group["step"].add_(1)
        start = len(params)
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("Lamb does not support sparse gradients, consider SparseAdam instead.")
            state = optimizer.state[p]
            if len(state) == 0:
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
        if len(params) > start:
            spans.append((group, start, len(params)))
    if not params:
        return

    clip = _global_clip(optimizer, grads, stacked)
    gscale = 1.0  # the clip factor's inverse, folded into the moments' scalars where it is a number
    if clip is not None:
        if clip.device.type == "cpu" and not stacked:  # reading it costs no device sync on CPU
            gscale = 1.0 / clip.item()
        else:  # not in place: p.grad stays as autograd left it
            grads = torch._foreach_div(grads, [_seed_view(clip, g) for g in grads]) if stacked else torch._foreach_div(grads, clip)

    # The moments. Groups share betas in every timm factory; where they do not, per group.
    for betas, grad_avg, idx in _by_key(spans, lambda g: (tuple(g["betas"]), bool(g["grad_averaging"]))):
        beta1, beta2 = betas
        beta3 = 1 - beta1 if grad_avg else 1.0
        m, v, g = _take(exp_avgs, idx), _take(exp_avg_sqs, idx), _take(grads, idx)
        if beta3 == 1 - beta1 and gscale == 1.0:
            torch._foreach_lerp_(m, g, beta3)
        else:
            torch._foreach_mul_(m, beta1)
            torch._foreach_add_(m, g, alpha=beta3 * gscale)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, value=(1 - beta2) * gscale * gscale)

    # m_hat / (sqrt(v_hat) + eps) == scale * m / (sqrt(v) + eps * sqrt(bc2)), scale = sqrt(bc2) / bc1
    denom = torch._foreach_sqrt(exp_avg_sqs)
    scales: list[float] = [1.0] * len(params)
    eps_terms: list[float] = [0.0] * len(params)
    for group, s, e in spans:
        step = group["step"].item()
        beta1, beta2 = group["betas"]
        bc1, bc2 = (1 - beta1**step, 1 - beta2**step) if group["bias_correction"] else (1.0, 1.0)
        scales[s:e] = [bc2**0.5 / bc1] * (e - s)
        eps_terms[s:e] = [group["eps"] * bc2**0.5] * (e - s)
    torch._foreach_add_(denom, eps_terms)
    updates = torch._foreach_div(exp_avgs, denom)
    del denom

    caution = [i for group, s, e in spans if group["caution"] for i in range(s, e)]
    if caution:  # Cautious Optimizers (arXiv 2411.16085): zero the update where it disagrees with the grad
        u, g = _take(updates, caution), _take(grads, caution)
        masks = [(x > 0).to(y.dtype) for x, y in zip(torch._foreach_mul(u, g), g)]
        if stacked:
            means = [mk.mean(dim=tuple(range(1, mk.dim()))) if mk.dim() > 1 else mk for mk in masks]
        else:
            means = [mk.mean() for mk in masks]
        means = [mn.clamp(min=1e-3) for mn in means]
        torch._foreach_div_(masks, _per_tensor(means, masks, stacked))
        torch._foreach_mul_(u, masks)

    # Weight decay: coupled (added to the update, unscaled by the folded bias correction) or
    # decoupled (applied to the weights; lr**2 / max_lr when corrected).
    adapt: list[int] = []
    plain: list[int] = []
    for group, s, e in spans:
        wd, lr = group["weight_decay"], group["lr"]
        idx = list(range(s, e))
        if wd != 0:
            if group["decoupled_decay"]:
                max_lr = group["max_lr_snapshot"] if group["corrected_weight_decay"] else None
                wd_scale = lr if max_lr is None else lr**2 / max_lr
                p = _take(params, idx)
                torch._foreach_add_(p, p, alpha=-wd_scale * wd)
            else:
                torch._foreach_add_(_take(updates, idx), _take(params, idx), alpha=wd / scales[s])
        (adapt if wd != 0 or group["always_adapt"] else plain).extend(idx)

    # Layer-wise trust ratios, vectorised over each group's tensors with the group's scalars as
    # Python numbers (no host-to-device copies), folded into the step size: one op for all.
    adapt_set = set(adapt)
    p_all, u_all, steps_all = [], [], []
    for group, s, e in spans:
        idx = [i for i in range(s, e) if i in adapt_set]
        if not idx:
            continue
        p, u = _take(params, idx), _take(updates, idx)
        w_norms, u_norms = torch.stack(_norms(p, stacked)), torch.stack(_norms(u, stacked)) * scales[s]  # (T,) or (T, K)
        ratio = torch.where(w_norms > 0, torch.where(u_norms > 0, w_norms / u_norms, 1.0), 1.0)
        if group["trust_clip"]:  # LAMBC: at most 1
            ratio = ratio.clamp(max=1.0)
        p_all += p
        u_all += u
        steps_all += _per_tensor(list((ratio * (-group["lr"] * scales[s])).unbind(0)), p, stacked)
    if p_all:
        torch._foreach_addcmul_(p_all, u_all, steps_all)
    plain_set = set(plain)
    for group, s, e in spans:  # the rest: a plain Adam-like step
        idx = [i for i in range(s, e) if i in plain_set]
        if idx:
            torch._foreach_add_(_take(params, idx), _take(updates, idx), alpha=-group["lr"] * scales[s])


def _take(xs: list, idx: list[int]) -> list:
    return [xs[i] for i in idx]


def _by_key(spans, key: Callable[[dict], Any]):
    """(key..., indices) for the groups sharing a key, in order of first appearance."""
    out: dict[Any, list[int]] = {}
    for group, s, e in spans:
        out.setdefault(key(group), []).extend(range(s, e))
    return [(*k, idx) for k, idx in out.items()]


# ------------------------------------------------------------------ the flat layout


def _dense(t: torch.Tensor) -> bool:
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


class _FlatLayout:
    """A non-stacked LAMB step on a CPU over tensors laid end to end, by the compiled loop of
    :mod:`rsb_tune.training.optim_kernels` (see the module docstring).

    ``build`` copies every parameter and its two moments into one buffer each and points the
    parameters (``p.data``) and the optimizer's state at views of them, each view with its
    tensor's own strides (channels-last weights stay channels-last). Each step copies the
    gradients into a fourth buffer. ``current`` says whether the parameters and the state are
    still those views: a ``load_state_dict``, a new group, or parameters moved or replaced from
    outside make the optimizer build a new layout."""

    def __init__(self, optimizer, params: list[torch.Tensor]):
        self.params = params
        self.spans: list[tuple[dict, int, int]] = []
        start = 0
        for g in optimizer.param_groups:
            self.spans.append((g, start, start + len(g["params"])))
            start += len(g["params"])
        p0 = params[0]
        n = sum(p.numel() for p in params)
        buffers = [torch.empty(n, dtype=p0.dtype) for _ in range(5)]  # weights, moments, gradients, scratch
        views: list[list[torch.Tensor]] = [[] for _ in buffers]
        offsets = [0]
        for p in params:
            for buf, vs in zip(buffers, views):
                vs.append(torch.as_strided(buf, p.size(), p.stride(), offsets[-1]))
            offsets.append(offsets[-1] + p.numel())
        pv, mv, vv, self.g, uv = views
        for p, pt, mt, vt in zip(params, pv, mv, vv):
            pt.copy_(p)
            state = optimizer.state[p]
            if state:  # moments from earlier steps or a loaded checkpoint
                mt.copy_(state["exp_avg"])
                vt.copy_(state["exp_avg_sq"])
            else:
                mt.zero_()
                vt.zero_()
            p.data = pt
            state["exp_avg"], state["exp_avg_sq"] = mt, vt
        self.m0, self.v0 = mv[0], vv[0]
        self.ptrs = [p.data_ptr() for p in params]
        self.arrays = [b.numpy() for b in buffers]
        self.offsets = np.array(offsets, np.int64)
        adapt = self._per_tensor(lambda g: g["weight_decay"] != 0 or g["always_adapt"]) != 0
        self.adapt = np.flatnonzero(adapt).tolist()  # the tensors whose step the trust ratio scales
        self.p_adapt, self.u_adapt = [pv[i] for i in self.adapt], [uv[i] for i in self.adapt]
        clip = (self._per_tensor(lambda g: g["trust_clip"]) != 0)[adapt]
        self.trust_clip = torch.from_numpy(clip) if clip.any() else None

    @classmethod
    def build(cls, optimizer) -> "_FlatLayout | None":
        """A layout over the optimizer's tensors, or None where the step stays multi-tensor."""
        groups = optimizer.param_groups
        params = [p for g in groups for p in g["params"]]
        if not params or params[0].device.type != "cpu" or len({id(p) for p in params}) != len(params):
            return None
        shared = {(tuple(g["betas"]), g["eps"], bool(g["bias_correction"]), bool(g["grad_averaging"])) for g in groups}
        if len(shared) > 1 or any(g["stacked"] or g["caution"] or torch.is_tensor(g["lr"]) for g in groups):
            return None
        p0 = params[0]
        if p0.dtype not in (torch.float32, torch.float64):
            return None
        if any(p.dtype != p0.dtype or p.device != p0.device or p.is_sparse or not _dense(p) for p in params):
            return None
        if len({int(g["step"]) if "step" in g else 0 for g in groups}) > 1:
            return None
        return cls(optimizer, params)

    def current(self, optimizer) -> bool:
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if len(params) != len(self.params) or any(a is not b for a, b in zip(params, self.params)):
            return False
        if [p.data_ptr() for p in params] != self.ptrs:
            return False
        state = optimizer.state.get(params[0])
        return state is not None and state.get("exp_avg") is self.m0 and state.get("exp_avg_sq") is self.v0

    def _per_tensor(self, value) -> np.ndarray:
        """``value(group)`` for each tensor, as a float64 array."""
        return np.repeat(np.array([float(value(g)) for g, _, _ in self.spans]), [e - s for _, s, e in self.spans])

    def step(self, optimizer) -> None:
        from rsb_tune.training.optim_kernels import add_scaled, lamb_update
        from timm.optim._helpers import _init_scalar

        torch._foreach_copy_(self.g, [p.grad for p in self.params])
        for group, _, _ in self.spans:
            if "step" not in group:
                group["step"] = _init_scalar(device="cpu")
            group["step"].add_(1)
        g0 = self.spans[0][0]
        beta1, beta2 = g0["betas"]
        step = g0["step"].item()
        bc1, bc2 = (1 - beta1**step, 1 - beta2**step) if g0["bias_correction"] else (1.0, 1.0)

        def decoupled(g):  # timm: p -= lr * wd * p (lr**2 / max_lr when corrected)
            if g["weight_decay"] == 0 or not g["decoupled_decay"]:
                return 0.0
            return (g["lr"] ** 2 / g["max_lr_snapshot"] if g["corrected_weight_decay"] else g["lr"]) * g["weight_decay"]

        clip = _global_clip(optimizer, self.g, stacked=False)  # from timm's float norms, as the multi-tensor step
        clip = 1.0 if clip is None else clip.item()
        scale = bc2**0.5 / bc1
        dtype = self.arrays[0].dtype.type  # the scalars in the buffers' dtype: float32 arithmetic as timm's
        lamb_update(
            *self.arrays, self.offsets,
            (self._per_tensor(lambda g: 0.0 if g["decoupled_decay"] else g["weight_decay"]) / scale).astype(dtype),
            self._per_tensor(decoupled).astype(dtype),
            dtype(clip), dtype(beta1), dtype(beta2), dtype(1 - beta2), dtype(1 - beta1 if g0["grad_averaging"] else 1.0),
            bool(g0["grad_averaging"]), dtype(g0["eps"] * bc2**0.5),
        )  # fmt: skip
        # per-tensor trust ratios of the tensors that adapt, times -lr * scale
        steps = torch.from_numpy(self._per_tensor(lambda g: -g["lr"] * scale).astype(dtype))
        if self.adapt:
            w_norm = torch.stack(torch._foreach_norm(self.p_adapt))
            u_norm = torch.stack(torch._foreach_norm(self.u_adapt)) * scale
            ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0)
            if self.trust_clip is not None:
                ratio = torch.where(self.trust_clip, ratio.clamp(max=1.0), ratio)
            steps[self.adapt] *= ratio
        add_scaled(self.arrays[0], self.arrays[4], self.offsets, steps.numpy())


# ------------------------------------------------------------------ the factory


def _foreach_lamb_from(optimizer: Lamb) -> ForeachLamb:
    """A ForeachLamb over the groups (and hyperparameters) of a fresh timm Lamb."""
    if optimizer.state:
        raise ValueError("only a fresh optimizer (no state yet) can be converted")
    names = set(inspect.signature(Lamb.__init__).parameters) - {"self", "params"}
    return ForeachLamb([dict(g) for g in optimizer.param_groups], **{k: v for k, v in optimizer.defaults.items() if k in names})


# timm optimizer class -> its multi-tensor counterpart, made from a fresh instance. Every timm
# LAMB variant (lamb, lambc, lambw, lambcw, lambcd, clamb, clambw) is a timm Lamb with flags.
MULTI_TENSOR: Mapping[type, Callable[[Any], torch.optim.Optimizer]] = {Lamb: _foreach_lamb_from}


def multi_tensor(optimizer):
    """The multi-tensor counterpart of a fresh timm optimizer where one is registered in
    :data:`MULTI_TENSOR`, else the optimizer itself."""
    convert = MULTI_TENSOR.get(type(optimizer))
    return convert(optimizer) if convert is not None else optimizer


def create_optimizer(model, *, opt: str, **kwargs):
    """``timm.optim.create_optimizer_v2(model, opt=opt, **kwargs)``, then :func:`multi_tensor`."""
    return multi_tensor(create_optimizer_v2(model, opt=opt, **kwargs))
