"""The multi-tensor LAMB against timm's own ``Lamb``, step by step, on a real timm model."""

import copy

import pytest
import torch

from rsb_tune.training.optim import ForeachLamb, create_optimizer, multi_tensor

STEPS = 50
RTOL = 1e-6


def _model(seed=0):
    import timm

    torch.manual_seed(seed)
    return timm.create_model("test_resnet", num_classes=5)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 5, (4,), generator=g)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / a.norm().clamp(min=1e-30)).item()


def _grads(model, loss_scale, seed):
    x, y = _batch(seed)
    model.zero_grad(set_to_none=True)
    (loss_scale * torch.nn.functional.cross_entropy(model(x), y)).backward()


CONFIGS = {
    # name: (timm opt name, create_optimizer_v2 kwargs, loss scale: 1e3 makes the global clip act)
    "lamb": ("lamb", dict(lr=5e-3, weight_decay=0.02), 1.0),
    "lamb-clipping": ("lamb", dict(lr=5e-3, weight_decay=0.02), 1e3),
    "lamb-no-clip": ("lamb", dict(lr=5e-3, weight_decay=0.02, max_grad_norm=None), 1e3),
    "lamb-no-decay": ("lamb", dict(lr=5e-3, weight_decay=0.0), 1e3),
    "lamb-no-grad-averaging": ("lamb", dict(lr=5e-3, weight_decay=0.02, grad_averaging=False), 1.0),
    "lamb-no-bias-correction": ("lamb", dict(lr=1e-3, weight_decay=0.05, bias_correction=False), 1.0),
    "lamb-always-adapt": ("lamb", dict(lr=5e-3, weight_decay=0.02, always_adapt=True), 1.0),
    "lambc": ("lambc", dict(lr=5e-3, weight_decay=0.02), 1e3),
    "lambw": ("lambw", dict(lr=5e-3, weight_decay=0.05), 1.0),
    "lambcd": ("lambcd", dict(lr=5e-3, weight_decay=0.05), 1.0),
    "clamb": ("clamb", dict(lr=5e-3, weight_decay=0.02), 1e3),
    "clambw": ("clambw", dict(lr=5e-3, weight_decay=0.02), 1.0),
}


def _clip_factor(model, max_grad_norm=1.0):
    norms = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    return (torch.linalg.vector_norm(torch.stack(norms)) / max_grad_norm).item()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_timm_lamb_step_by_step(name):
    from timm.optim import Lamb, create_optimizer_v2

    opt_name, kwargs, loss_scale = CONFIGS[name]
    a = _model()
    b = copy.deepcopy(a)
    ref = create_optimizer_v2(a, opt=opt_name, **kwargs)
    new = create_optimizer(b, opt=opt_name, **kwargs)
    assert type(ref) is Lamb and type(new) is ForeachLamb
    # the same groups (no weight decay for biases and norm weights) and hyperparameters
    assert len(new.param_groups) == len(ref.param_groups) == (2 if kwargs["weight_decay"] else 1)
    for gr, gn in zip(ref.param_groups, new.param_groups):
        assert [p.shape for p in gr["params"]] == [p.shape for p in gn["params"]]
        assert {k: v for k, v in gr.items() if k != "params"} == {k: v for k, v in gn.items() if k not in ("params", "stacked")}

    clipped = []
    for step in range(STEPS):
        _grads(a, loss_scale, seed=step % 5)
        for pa, pb in zip(a.parameters(), b.parameters()):
            pb.grad = pa.grad.clone()
        clipped.append(_clip_factor(a) > 1.0)
        ref.step()
        new.step()
        for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
            assert _rel(pa, pb) <= RTOL, (step, n, _rel(pa, pb))
    if loss_scale > 1 and kwargs.get("max_grad_norm", 1.0) is not None:
        assert sum(clipped) >= STEPS // 2  # the global clip acted
    for pa, pb in zip(a.parameters(), b.parameters()):
        for key in ("exp_avg", "exp_avg_sq"):
            assert _rel(ref.state[pa][key], new.state[pb][key]) <= 1e-5
    assert torch.equal(ref.param_groups[0]["step"], new.param_groups[0]["step"])
    # on a CPU every config without caution ran on the flat layout: the parameters are its views
    flat = new._flat
    assert (flat is not None) == (not any(g["caution"] for g in new.param_groups))
    if flat is not None:
        assert all(p.untyped_storage().data_ptr() == flat.arrays[0].ctypes.data for p in b.parameters())


def test_zero_and_missing_gradients_match_timm():
    """A tensor whose gradient is zero (trust ratio 1, moments decay) and one with no gradient
    (skipped: no state, unchanged) behave as in timm."""
    from timm.optim import create_optimizer_v2

    a = _model()
    b = copy.deepcopy(a)
    ref = create_optimizer_v2(a, opt="lamb", lr=5e-3, weight_decay=0.02)
    new = create_optimizer(b, opt="lamb", lr=5e-3, weight_decay=0.02)
    names = [n for n, _ in a.named_parameters()]
    zero, missing = names[0], names[-1]  # the stem conv (decayed) and the classifier bias (not)
    missing_before = dict(b.named_parameters())[missing].detach().clone()
    for step in range(STEPS):
        _grads(a, 1.0, seed=step % 5)
        for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
            if n == zero:
                pa.grad.zero_()
            if n == missing:
                pa.grad = None
            pb.grad = None if pa.grad is None else pa.grad.clone()
        ref.step()
        new.step()
    pb = dict(b.named_parameters())
    for n, pa in a.named_parameters():
        assert _rel(pa, pb[n]) <= RTOL, n
    assert torch.equal(pb[missing], missing_before) and len(new.state[pb[missing]]) == 0
    assert new.state[pb[zero]]["exp_avg"].abs().max() == 0


def test_state_dict_resumes_in_either_class():
    """A checkpoint of ForeachLamb loads into timm's Lamb and the reverse, and the run goes on
    as timm's Lamb run straight through (fed the same gradients)."""
    from timm.optim import create_optimizer_v2

    straight, chain = _model(), _model()
    ref = create_optimizer_v2(straight, opt="lamb", lr=5e-3, weight_decay=0.02)
    makers = [create_optimizer, create_optimizer_v2, create_optimizer]  # switch at steps 10 and 15
    opt = makers[0](chain, opt="lamb", lr=5e-3, weight_decay=0.02)
    for step in range(20):
        if step in (10, 15):
            sd = copy.deepcopy(opt.state_dict())
            assert set(sd["state"][0]) == {"exp_avg", "exp_avg_sq"} and len(sd["param_groups"]) == 2
            opt = makers[1 if step == 10 else 2](chain, opt="lamb", lr=5e-3, weight_decay=0.02)
            opt.load_state_dict(sd)
        _grads(straight, 10.0, seed=step)
        for pa, pb in zip(straight.parameters(), chain.parameters()):
            pb.grad = pa.grad.clone()
        ref.step()
        opt.step()
        for pa, pb in zip(straight.parameters(), chain.parameters()):
            assert _rel(pa, pb) <= RTOL, step
    assert type(opt) is ForeachLamb


def test_foreach_false_is_timms_own_step_bit_for_bit():
    from timm.optim import create_optimizer_v2

    a = _model()
    b = copy.deepcopy(a)
    ref = create_optimizer_v2(a, opt="lamb", lr=5e-3, weight_decay=0.02)
    new = create_optimizer(b, opt="lamb", lr=5e-3, weight_decay=0.02, foreach=False)
    for step in range(5):
        for model, opt in ((a, ref), (b, new)):
            _grads(model, 1.0, seed=step)
            opt.step()
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))


def test_other_optimizers_stay_timms():
    from timm.optim import create_optimizer_v2

    for opt in ("adamw", "sgd", "lars"):
        got = create_optimizer(_model(), opt=opt, lr=1e-3, weight_decay=0.01)
        assert type(got) is type(create_optimizer_v2(_model(), opt=opt, lr=1e-3, weight_decay=0.01))
    sgd = torch.optim.SGD(_model().parameters(), lr=0.1)
    assert multi_tensor(sgd) is sgd


def test_build_trial_uses_it_for_lamb_only(digits):
    from rsb_tune.training.trial import build_trial
    from tests.conftest import make_config

    parts = build_trial(make_config("A2", epochs=1), digits)
    assert type(parts.optimizer) is ForeachLamb
    assert parts.scheduler.optimizer is parts.optimizer
    assert type(build_trial(make_config("A2", epochs=1, opt="adamw"), digits).optimizer) is not ForeachLamb


@pytest.mark.parametrize("opt_name", ["lamb", "clambw"])
def test_stacked_equals_separate_timm_lambs(opt_name):
    """K models stacked along dim 0 (torch.func.stack_module_state) under one stacked LAMB
    equal K timm Lambs: the global clip (active for some seeds, not others), the caution mask's
    mean and the trust ratios are per seed."""
    from timm.optim import create_optimizer_v2
    from torch.func import stack_module_state

    K = 3
    models = [_model(seed=k) for k in range(K)]
    names = [n for n, _ in models[0].named_parameters()]
    refs = [create_optimizer_v2(copy.deepcopy(m), opt=opt_name, lr=5e-3, weight_decay=0.02) for m in models]
    ref_models = [[p for g in r.param_groups for p in g["params"]] for r in refs]
    stacked, _ = stack_module_state(models)
    base = models[0]
    # the groups create_optimizer_v2 makes: no decay for 1-d tensors (biases, norm weights)
    decay = [stacked[n] for n, p in base.named_parameters() if p.ndim > 1]
    no_decay = [stacked[n] for n, p in base.named_parameters() if p.ndim <= 1]
    template = create_optimizer_v2(base, opt=opt_name, lr=5e-3, weight_decay=0.02)
    assert [p.ndim > 1 for p in template.param_groups[1]["params"]] == [True] * len(decay)
    kwargs = {k: v for k, v in template.defaults.items() if k in ("lr", "betas", "eps", "max_grad_norm", "trust_clip", "caution", "decoupled_decay")}
    opt = ForeachLamb([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.02}], stacked=True, **kwargs)
    order = [n for n, p in base.named_parameters() if p.ndim <= 1] + [n for n, p in base.named_parameters() if p.ndim > 1]
    scales = [1.0, 1e3, 30.0]  # seed 0 unclipped, seed 1 clipped, seed 2 in between
    for step in range(STEPS):
        grads = []
        for k, m in enumerate(models):
            m.load_state_dict({n: stacked[n][k] for n in names}, strict=False)
            _grads(m, scales[k], seed=step % 5 + k)
            grads.append({n: p.grad for n, p in m.named_parameters()})
            params_k = dict(zip([n for n in order], ref_models[k]))
            for n, p in m.named_parameters():
                params_k[n].grad = p.grad.clone()
            refs[k].step()
        for n in names:
            stacked[n].grad = torch.stack([grads[k][n] for k in range(K)])
        opt.step()
        for k in range(K):
            params_k = dict(zip(order, ref_models[k]))
            for n in names:
                assert _rel(params_k[n], stacked[n][k]) <= RTOL, (step, k, n)


def _run_against_timm(a, b, ref, new, steps, *, loss_scale=1.0, between=None):
    """Feed both optimizers the same gradients for ``steps`` steps; parameters agree to RTOL."""
    for step in range(steps):
        if between is not None:
            between(step)
        _grads(a, loss_scale, seed=step % 5)
        for pa, pb in zip(a.parameters(), b.parameters()):
            pb.grad = pa.grad.clone()
        ref.step()
        new.step()
        for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
            assert _rel(pa, pb) <= RTOL, (step, n, _rel(pa, pb))


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_flat_layout_keeps_each_tensors_layout(memory_format):
    """Channels-last weights stay channels-last views of the flat buffer (the trial's CPU
    layout), and the step matches timm's on them."""
    from timm.optim import create_optimizer_v2

    a = _model().to(memory_format=memory_format)
    b = copy.deepcopy(a)
    ref = create_optimizer_v2(a, opt="lamb", lr=5e-3, weight_decay=0.02)
    new = create_optimizer(b, opt="lamb", lr=5e-3, weight_decay=0.02)
    _run_against_timm(a, b, ref, new, STEPS, loss_scale=10.0)
    assert new._flat is not None
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert pb.stride() == pa.stride()


def test_flat_layout_rebuilt_after_load_state_dict_and_model_load():
    """A checkpoint loaded into the same optimizer mid-run (new state tensors) makes a new layout
    around them, and a model ``load_state_dict`` (copies into the views) keeps the layout; the
    run goes on as timm's."""
    from timm.optim import create_optimizer_v2

    a = _model()
    b = copy.deepcopy(a)
    ref = create_optimizer_v2(a, opt="lamb", lr=5e-3, weight_decay=0.02)
    new = create_optimizer(b, opt="lamb", lr=5e-3, weight_decay=0.02)
    layouts = []

    def between(step):
        if step == 10:
            new.load_state_dict(copy.deepcopy(new.state_dict()))
            assert new._flat is None
        if step == 20:
            b.load_state_dict(copy.deepcopy(b.state_dict()))
        if new._flat is not None and (not layouts or layouts[-1] is not new._flat):
            layouts.append(new._flat)

    _run_against_timm(a, b, ref, new, 30, between=between)
    assert len(layouts) == 2 and new._flat is layouts[-1]


def test_flat_layout_in_float64():
    from timm.optim import create_optimizer_v2

    a = _model().double()
    b = copy.deepcopy(a)
    ref = create_optimizer_v2(a, opt="lamb", lr=5e-3, weight_decay=0.02)
    new = create_optimizer(b, opt="lamb", lr=5e-3, weight_decay=0.02)
    x, y = _batch()
    for step in range(20):
        for model in (a, b):
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x.double()), y).backward()
        ref.step()
        new.step()
    assert new._flat is not None and new._flat.arrays[0].dtype.name == "float64"
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert _rel(pa, pb) <= 1e-12
