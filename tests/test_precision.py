"""Which precision a trial trains in (``amp``), and the CPU defect that ``amp: auto`` steers around.

With torch 2.14's oneDNN, a CPU's bf16 weight gradient of a convolution with a kernel wider than
1 and a stride larger than its input is wrong in some calls (NaN, or off by 10^36;
benchmarks/RESULTS.md section 14c). :func:`bf16_conv_hazards` names such layers; these tests
check that it names the one the suite met (``test_resnet`` at 16 px) and spares the default
model, that every shape it calls safe gets bf16 gradients equal to fp32's up to bf16 rounding on
this machine's CPU (the rule's safety claim, checked against an fp32 reference), and what
``amp: auto`` and ``amp: bf16`` do with a model it flags.
"""

from __future__ import annotations

import itertools

import pytest
import timm
import torch

from rsb_tune.training.precision import bf16_conv_hazards, cpu_bf16_units, resolve_amp
from tests.conftest import make_config


def test_the_rule_names_the_16px_layer_and_spares_the_default_model():
    torch.manual_seed(0)
    small = timm.create_model("test_resnet", num_classes=10)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    rng = torch.get_rng_state()
    small.train()
    assert bf16_conv_hazards(small, 16) == ["layer4.0.conv1 (3x3, stride 2, input 1x1)"]
    # the probe forward changed nothing: weights, BN statistics, mode and the random stream
    assert all(torch.equal(before[k], v) for k, v in small.state_dict().items())
    assert small.training and torch.equal(rng, torch.get_rng_state())
    assert bf16_conv_hazards(small, 32) == []
    assert bf16_conv_hazards(timm.create_model("resnet10t", num_classes=10), 32) == []  # the default trial's model
    assert len(bf16_conv_hazards(timm.create_model("resnet10t", num_classes=10), 16)) >= 1


def _conv_is_hazard(size: int, kernel: int, stride: int) -> bool:
    conv = torch.nn.Conv2d(8, 8, kernel, stride=stride, padding=kernel // 2, bias=False)
    return bool(bf16_conv_hazards(torch.nn.Sequential(conv), size))


def _bf16_weight_grad_error(size: int, kernel: int, stride: int, channels: int = 32, reps: int = 4) -> float:
    """The largest relative error of bf16 autocast's weight gradient against fp32 on the same
    bf16-rounded inputs, over ``reps`` calls, both memory formats (inf for a non-finite one)."""
    worst = 0.0
    for channels_last, _ in itertools.product((False, True), range(reps)):
        conv = torch.nn.Conv2d(channels, channels, kernel, stride=stride, padding=kernel // 2, bias=False)
        x = torch.randn(4, channels, size, size)
        if channels_last:
            conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        grad_out = torch.randn(y.shape)
        y.float().backward(grad_out)
        ref_w = conv.weight.detach().to(torch.bfloat16).float().requires_grad_()
        torch.nn.functional.conv2d(x.to(torch.bfloat16).float(), ref_w, stride=stride, padding=kernel // 2).backward(grad_out.to(torch.bfloat16).float())
        got = conv.weight.grad
        if not torch.isfinite(got).all():
            return float("inf")
        worst = max(worst, float((got - ref_w.grad).abs().max() / ref_w.grad.abs().max().clamp_min(1e-12)))
    return worst


def test_every_shape_the_rule_calls_safe_gets_right_bf16_gradients():
    torch.manual_seed(0)
    checked = 0
    for size, kernel, stride in itertools.product((1, 2, 3, 4), (1, 3, 5), (1, 2, 3, 4)):
        if size + 2 * (kernel // 2) < kernel or _conv_is_hazard(size, kernel, stride):
            continue
        err = _bf16_weight_grad_error(size, kernel, stride)
        assert err < 0.02, f"input {size}x{size}, kernel {kernel}, stride {stride}: relative error {err:.3g} in bf16"
        checked += 1
    assert checked >= 30


def test_amp_auto_follows_the_cpu_and_falls_back_for_a_flagged_model():
    from rsb_tune.training.trial import TrialRuntime

    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) == ("bf16" if cpu_bf16_units() else "off")
    assert resolve_amp("fp16", cpu) == "off" and resolve_amp("off", cpu) == "off" and resolve_amp("bf16", cpu) == "bf16"
    small = timm.create_model("test_resnet", num_classes=10)

    auto = TrialRuntime(make_config("A2", device="cpu", model="test_resnet", img_size=16))
    auto.check_model(small, 16)
    assert auto.amp == "off"  # fp32, whatever the CPU: bf16 would train on wrong gradients here
    fine = TrialRuntime(make_config("A2", device="cpu", model="test_resnet", img_size=32))
    fine.check_model(small, 32)
    assert fine.amp == ("bf16" if cpu_bf16_units() else "off")

    asked = TrialRuntime(make_config("A2", device="cpu", model="test_resnet", img_size=16, amp="bf16"))
    with pytest.raises(ValueError, match=r"amp=bf16 at img_size 16: layer4\.0\.conv1 \(3x3, stride 2, input 1x1\)"):
        asked.check_model(small, 16)


def test_a_flagged_trial_trains_in_fp32_and_records_it(digits):
    """The suite's 16 px trial under ``amp: auto``: fp32, recorded as ``runtime_amp`` off, finite."""
    from tests.test_trial import run

    cfg = make_config("A2", epochs=1, seed=1, model="test_resnet", model_kwargs={}, img_size=16, test_img_size=16, batch_size=8, eval_batch_size=16)
    reports, _ = run(cfg, digits)
    assert reports[-1]["runtime_amp"] == "off" and reports[-1]["status"] == "ok"
