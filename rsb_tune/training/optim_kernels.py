"""The elementwise part of a LAMB step over flat buffers on a CPU, compiled loops (numba).

:class:`rsb_tune.training.optim._FlatLayout` lays a model's parameters, their gradients and both moments
end to end, one buffer each. :func:`lamb_update` walks them tensor by tensor with timm's
``Lamb`` arithmetic (the clipped gradient, the moments, the bias-corrected update, coupled or
decoupled weight decay) and :func:`add_scaled` applies each tensor's step. Between the two the
norms (the global gradient norm, the per-tensor trust ratios) are torch's own
``_foreach_norm``, as in timm: torch sums a float32 tensor in float32, off by ~1e-6 relative on
the largest tensors, and a more exact norm would drift away from timm's trajectory faster than
the 1e-6 over 50 steps the tests hold it to (``tests/test_optim.py``). Torch ops for the
elementwise part cost about 1.5 ms a step on the project's default model (47 tensors, 0.32 M
floats): each op is dispatched per tensor, and ``torch.sqrt`` takes a slow path on zeros.
Compiled on first use (cached on disk).
"""

from __future__ import annotations

import math

import numpy as np
from rsb_tune._jit import njit


@njit(cache=True, error_model="numpy")
def lamb_update(p, m, v, g, u, offsets, coupled_wd, decoupled, clip, beta1, beta2, one_minus_beta2, beta3, lerp, eps):
    """LAMB's update before the trust ratio, in place over flat buffers ``p`` (weights), ``m``,
    ``v`` (moments), ``g`` (gradients) into ``u``. Tensor t is ``[offsets[t], offsets[t + 1])``;
    per tensor, ``coupled_wd`` (already over the bias-correction scale: added to the update)
    and ``decoupled`` (the weights scaled by 1 - it). ``clip``: the global clip factor (>= 1).
    ``lerp``: the first moment by torch's ``lerp_`` (grad averaging), else
    ``m * beta1 + beta3 * g``. ``eps`` is eps * sqrt(bias correction 2): with
    scale = sqrt(bias correction 2) / bias correction 1, timm's m_hat / (sqrt(v_hat) + eps)
    equals scale * m / (sqrt(v) + eps * sqrt(bias correction 2)). The scalars come in the
    buffers' dtype, so the arithmetic is the buffers' (float32, as timm's)."""
    for t in range(offsets.shape[0] - 1):
        s, e = offsets[t], offsets[t + 1]
        # slices indexed from 0 (no negative-index handling) and IEEE division
        # (error_model="numpy": no zero check) let the loops vectorise
        ps, ms, vs, gs, us = p[s:e], m[s:e], v[s:e], g[s:e], u[s:e]
        wd = coupled_wd[t]
        if lerp:  # torch's lerp_: the difference rounded, then one fused multiply-add
            for i in range(ps.shape[0]):
                gi = gs[i] / clip
                ms[i] = float(ms[i]) + float(beta3) * float(gi - ms[i])
                vs[i] = vs[i] * beta2 + one_minus_beta2 * gi * gi
                us[i] = ms[i] / (np.sqrt(vs[i]) + eps) + wd * ps[i]
        else:
            for i in range(ps.shape[0]):
                gi = gs[i] / clip
                ms[i] = ms[i] * beta1 + beta3 * gi
                vs[i] = vs[i] * beta2 + one_minus_beta2 * gi * gi
                us[i] = ms[i] / (np.sqrt(vs[i]) + eps) + wd * ps[i]
        c = decoupled[t]
        if c != 0:
            for i in range(ps.shape[0]):
                ps[i] = ps[i] - c * ps[i]


@njit(cache=True)
def add_scaled(p, u, offsets, steps):
    """p += steps[t] * u over each tensor t."""
    for t in range(offsets.shape[0] - 1):
        step = steps[t]
        ps, us = p[offsets[t] : offsets[t + 1]], u[offsets[t] : offsets[t + 1]]
        for i in range(ps.shape[0]):
            ps[i] = ps[i] + step * us[i]
