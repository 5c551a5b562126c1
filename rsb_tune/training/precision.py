"""Which precision a trial trains in: ``amp: auto`` resolved for the device it runs on.

On CUDA, ``auto`` is bf16 where the GPU supports it. On a CPU, ``auto`` is bf16 where the CPU
multiplies bf16 matrices in hardware (:func:`cpu_bf16_units`: AMX, or AVX-512 BF16), fp32
elsewhere (bf16 is emulated there, and slower), and fp32 for a model that has a convolution
whose bf16 weight gradient this CPU's convolution library computes wrong
(:func:`bf16_conv_hazards`).

That defect, found by the suite (a 16 px model diverged in bf16 where fp32 never did;
``benchmarks/RESULTS.md`` section 14c): with torch 2.14's oneDNN on a CPU, the bf16 weight
gradient of a convolution with a kernel wider than 1 and a stride larger than its input
(``layer4.0.conv1`` of timm's ``test_resnet`` at 16 px: 3 x 3, stride 2, a 1 x 1 input) holds
garbage, NaN or values off by 10^36, in some calls and not others; the forward pass and every
other shape mapped (inputs 1-5 px, kernels 1-5, strides 1-6) agree with fp32 to bf16's
rounding. ``tests/test_precision.py`` checks the safe side of that rule on this machine's CPU.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

__all__ = ["cpu_bf16_units", "bf16_conv_hazards", "resolve_amp"]

logger = logging.getLogger("rsb_tune")


def cpu_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AMX, or AVX-512 BF16), as torch
    reads its capabilities. Only there does bf16 autocast pay: a probe of the default trial's
    forward+backward+step on one thread ran 1.35x faster with AMX (Sapphire Rapids) and 1.2-1.5x
    with AVX-512 BF16 alone (AMD EPYC). Elsewhere bf16 is emulated."""
    caps = getattr(torch.cpu, "get_capabilities", dict)()
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


def resolve_amp(amp: str, device: torch.device) -> str:
    """``amp`` as it runs on ``device`` before the model is seen: ``auto`` is bf16 on a CUDA GPU
    that supports it and on a CPU with bf16 units, else off; fp16 on a CPU is off (slow, and
    unsupported for many ops)."""
    if amp == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "off"
        return "bf16" if cpu_bf16_units() else "off"
    if amp == "fp16" and device.type != "cuda":
        return "off"
    return amp


def bf16_conv_hazards(model: torch.nn.Module, img_size: int) -> list[str]:
    """The model's convolutions whose bf16 weight gradient a CPU computes wrong at ``img_size``:
    a kernel wider than 1 and a stride larger than the input along some spatial dimension
    (each as ``"name (KxK, stride S, input HxW)"``). The input sizes come from one batch-1
    forward in eval mode without gradients, so the model's weights, buffers and the random
    streams are left as they were."""
    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    seen: dict[str, tuple] = {}
    hooks = []
    first = None
    for name, module in model.named_modules():
        if isinstance(module, convs):
            first = first or module

            def hook(mod, inputs, _out, name=name):
                seen.setdefault(name, tuple(inputs[0].shape[2:]))

            hooks.append(module.register_forward_hook(hook))
    if first is None:
        return []
    was_training = model.training
    param = next(model.parameters())
    try:
        model.eval()
        x = torch.zeros(1, first.in_channels, img_size, img_size, device=param.device, dtype=param.dtype)
        with torch.no_grad(), torch.autocast(param.device.type, enabled=False):
            model(x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    modules = dict(model.named_modules())
    bad = []
    for name, size in seen.items():
        mod: Any = modules[name]
        if any(k > 1 and s > n for k, s, n in zip(mod.kernel_size, mod.stride, size)):
            kernel = "x".join(map(str, mod.kernel_size))
            bad.append(f"{name} ({kernel}, stride {max(mod.stride)}, input {'x'.join(map(str, size))})")
    return bad
