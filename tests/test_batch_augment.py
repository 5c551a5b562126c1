"""rsb_tune.augment.batched against timm's PIL transforms: each op pixel for pixel on the same
image and arguments, every random draw in distribution, the whole transform's images in
distribution, and a trial on the batched path reproducible and resumable."""

import random

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from rsb_tune.augment import batched as ba
from rsb_tune.data.registry import build_transforms
from tests.conftest import make_config

GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "TranslateXRel", "TranslateYRel")


@pytest.fixture(scope="module")
def images(digits):
    """Digits (grey as RGB, flat black margins), colour noise (bands differ, the whole 0..255
    range) and one flat image (degenerate tables)."""
    g = np.random.default_rng(0)
    noise = g.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    return np.concatenate([digits.train.images[:60], noise, np.full((1, 32, 32, 3), 77, np.uint8)])


def _batch(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float()


def _timm_op(name, interpolation=Image.BICUBIC):
    from timm.data import auto_augment as aa

    from rsb_tune.data.registry import _posterize_zero_bits_compat

    _posterize_zero_bits_compat()  # the trial's posterize (0 bits: black) on Pillow >= 13
    hparams = {"translate_const": 14, "img_mean": (124, 116, 104), "interpolation": interpolation, "magnitude_std": 0.5}
    return aa.AugmentOp(name, prob=1.0, magnitude=7, hparams=hparams)


def _compiled_op(images, name, args, fill, interp):
    """The compiled kernel's op on each image (rsb_tune.augment.kernels.apply_op)."""
    from rsb_tune.augment import kernels as K

    fn = ba.BATCH_OPS[name][0]
    params = fn.matrices(args, 32, 32) if isinstance(fn, ba._Affine) else np.pad(args[:, None], ((0, 0), (0, 5)))
    out = images.copy()
    tmp = np.empty_like(out[0])
    for i in range(len(out)):
        K.apply_op(out[i], ba.kernel_codes()[name], params[i].astype(np.float64), np.array(fill, np.int64), interp == "bicubic", tmp)
    return out


@pytest.mark.parametrize("backend", ["torch", "compiled"])
@pytest.mark.parametrize("name,interp", [(n, "bicubic") for n in ba.BATCH_OPS] + [(n, "bilinear") for n in GEOMETRIC])
def test_each_op_gives_timms_pixels(images, name, interp, backend):
    """Every magnitude in [0, 10], both signs: the batched op - as torch ops and as the compiled
    CPU kernel - equals timm's PIL op exactly."""
    op = _timm_op(name, Image.BICUBIC if interp == "bicubic" else Image.BILINEAR)
    fn, level, signed = ba.BATCH_OPS[name]
    g = np.random.default_rng(len(name))
    magnitude = np.concatenate([[0.0, 10.0], g.uniform(0, 10, len(images) - 2)])
    sign = np.where(g.random(len(images)) > 0.5, -1.0, 1.0)
    args = level(magnitude, sign, op.hparams, (32, 32))
    if backend == "torch":
        got = fn(_batch(images), args, {"fill": op.kwargs["fillcolor"], "resample": interp}).permute(0, 2, 3, 1).numpy()
    else:
        got = _compiled_op(images, name, args, op.kwargs["fillcolor"], interp)
    for i, im in enumerate(images):
        if op.level_fn is None:
            timm_args = ()
        elif signed:  # timm draws the sign inside its level rule; give it ours
            timm_args = (float(args[i]) / (32 if name.endswith("Rel") else 1),)
        else:
            timm_args = op.level_fn(magnitude[i], op.hparams)
            assert timm_args[0] == args[i]  # the level rule itself
        want = np.asarray(op.aug_fn(Image.fromarray(im), *timm_args, **op.kwargs))
        assert np.array_equal(got[i], want), (name, i, timm_args, np.abs(got[i] - want).max())


@pytest.mark.parametrize("kind,out", [("bicubic", 32), ("bilinear", 32), ("bicubic", 40)])
def test_resized_crop_gives_pillows_pixels(images, kind, out):
    """Crops of every scale up to the whole image, resized to the output (never reduced, as
    batch_augment_for requires): Pillow's crop + resize, to a level in float32."""
    np.random.seed(1)
    boxes = ba.crop_params(len(images), 32, 32, (0.08, 1.0), (3 / 4, 4 / 3))
    boxes[:3] = [[0, 0, 32, 32], [3, 5, 20, 27], [10, 0, 22, 9]]
    got = ba.resized_crop(_batch(images), boxes, out, out, kind).permute(0, 2, 3, 1).numpy()
    resample = Image.BICUBIC if kind == "bicubic" else Image.BILINEAR
    want = []
    for im, (t, l, h, w) in zip(images, boxes):
        crop = Image.fromarray(im).crop((l, t, l + w, t + h))
        want.append(np.asarray(crop if (h, w) == (out, out) else crop.resize((out, out), resample)))
    diff = np.abs(got - np.stack(want))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.9999


def _compiled_crop(images, boxes, out_hw, kind, hflip, vflip):
    """rsb_tune.augment.kernels.augment_batch with no RandAugment layer: crop, resize, flips."""
    from rsb_tune.augment import kernels as K

    n, (height, width), (oh, ow) = len(images), images.shape[1:3], out_hw
    xt = [t[boxes[:, 1], boxes[:, 3]] for t in ba._span_taps(width, ow, kind)]
    yt = [t[boxes[:, 0], boxes[:, 2]] for t in ba._span_taps(height, oh, kind)]
    out = np.empty((n, oh, ow, 3), np.uint8)
    none = np.full((n, 1), K.NONE, np.int64)
    K.augment_batch(images, np.arange(n), boxes.astype(np.int64), *xt, *yt, hflip, vflip, none, np.zeros((n, 1, 6)), np.zeros(3, np.int64), True, out)
    return out


@pytest.mark.parametrize("kind", ["bicubic", "bilinear"])
def test_compiled_crop_gives_pillows_pixels(images, kind):
    """The kernel's crop (resized to the output, or copied when it has the output's size) and
    flips: Pillow's crop + resize in its fixed-point arithmetic, exactly."""
    np.random.seed(2)
    boxes = ba.crop_params(len(images), 32, 32, (0.08, 1.0), (3 / 4, 4 / 3))
    boxes[:4] = [[0, 0, 32, 32], [3, 5, 20, 27], [10, 0, 22, 9], [0, 0, 1, 1]]
    hflip, vflip = np.arange(len(images)) % 2 == 1, np.arange(len(images)) % 3 == 1
    got = _compiled_crop(images, boxes, (32, 32), kind, hflip, vflip)
    resample = Image.BICUBIC if kind == "bicubic" else Image.BILINEAR
    for i, (im, (t, l, h, w)) in enumerate(zip(images, boxes)):
        crop = Image.fromarray(im).crop((l, t, l + w, t + h))
        want = np.asarray(crop if (h, w) == (32, 32) else crop.resize((32, 32), resample))
        want = want[::-1 if vflip[i] else 1, ::-1 if hflip[i] else 1]
        assert np.array_equal(got[i], want), (i, (t, l, h, w))


def test_compiled_crop_reducing_sums_every_tap(images):
    """A reducing resize (up to 8 taps per output, beyond the 4 of any enlarging one): each
    pass is the fixed-point sum over its (lo, cnt, k) taps, rounded, shifted and clipped."""
    np.random.seed(3)
    boxes = ba.crop_params(len(images), 32, 32, (0.3, 1.0), (3 / 4, 4 / 3))
    no = np.zeros(len(images), bool)
    got = _compiled_crop(images, boxes, (20, 16), "bicubic", no, no)

    def resample(x, lo, cnt, k):  # x (rows, n, 3) -> (rows, len(lo), 3) along axis 1
        out = np.stack([(x[:, lo[o] : lo[o] + cnt[o]].astype(np.int64) * k[o, : cnt[o], None]).sum(1) for o in range(len(lo))], 1)
        return np.clip((out + (1 << 21)) >> 22, 0, 255)

    xlo, xcnt, xk = ba._span_taps(32, 16, "bicubic")
    ylo, ycnt, yk = ba._span_taps(32, 20, "bicubic")
    assert xcnt[boxes[:, 1], boxes[:, 3]].max() > 4 and ycnt[boxes[:, 0], boxes[:, 2]].max() > 4
    for im, out, (t, l, h, w) in zip(images, got, boxes):
        rows = resample(im[t : t + h, l : l + w], xlo[l, w], xcnt[l, w], xk[l, w])
        want = resample(rows.transpose(1, 0, 2), ylo[t, h], ycnt[t, h], yk[t, h]).transpose(1, 0, 2)
        assert np.array_equal(out, want), (t, l, h, w)


@pytest.mark.parametrize("aa,hflip", [("rand-m7-mstd0.5-inc1", 0.0), ("rand-m9-mstd0.5-inc1", 0.5), ("rand-m10-n3", 0.0)])
def test_compiled_kernel_gives_the_torch_ops_images(digits, aa, hflip):
    """The whole transform from the same draws: the CPU kernel (Pillow's integer resize) and the
    torch ops (the crop in float32 on CPU: a level off in ~1e-5 of the pixels, which later ops
    may carry) agree."""
    augment = ba.batch_augment_for(build_transforms(make_config("A2", auto_augment=aa, hflip=hflip))[0], (32, 32))
    assert augment.compiled
    pool = digits.train.images[:256]
    np.random.seed(5)
    torch_ops = augment.augment(torch.from_numpy(pool)).permute(0, 2, 3, 1).numpy()
    np.random.seed(5)
    compiled = augment.augment_compiled(pool, np.arange(len(pool)))
    diff = np.abs(torch_ops - compiled)
    assert (diff == 0).mean() > 0.9999 and diff.max() <= 3


def test_crop_draws_follow_timms_sampler():
    from timm.data.transforms import RandomResizedCropAndInterpolation as RRC

    n, img = 20000, Image.new("RGB", (32, 32))
    random.seed(0)
    timm = np.array([RRC.get_params(img, (0.35, 1.0), (3 / 4, 4 / 3)) for _ in range(n)])
    np.random.seed(0)
    ours = ba.crop_params(n, 32, 32, (0.35, 1.0), (3 / 4, 4 / 3))
    for k, name in enumerate(("top", "left", "h", "w")):
        assert stats.ks_2samp(timm[:, k], ours[:, k]).pvalue > 1e-3, name
    area = lambda b: b[:, 2] * b[:, 3] / 1024  # noqa: E731
    assert stats.ks_2samp(area(timm), area(ours)).pvalue > 1e-3
    assert (ours[:, 0] + ours[:, 2] <= 32).all() and (ours[:, 1] + ours[:, 3] <= 32).all()
    # nothing fits (scale > 1): both fall back to the same centre crop
    random.seed(0)
    np.random.seed(0)
    assert ba.crop_params(5, 32, 20, (2.0, 3.0), (3 / 4, 4 / 3)).tolist() == [list(RRC.get_params(Image.new("RGB", (20, 32)), (2.0, 3.0), (3 / 4, 4 / 3)))] * 5


def _timm_randaugment_draws(transform, n):
    """(layer op name, argument) of every op timm's RandAugment applies to n images."""
    ra = next(t for t in transform.transforms if type(t).__name__ == "RandAugment")
    drawn, originals = [], []
    for op in ra.ops:
        originals.append(op.aug_fn)
        op.aug_fn = lambda img, *args, _name=op.name, **kw: drawn.append((_name, args[0] if args else 0.0)) or img
    try:
        random.seed(0)
        np.random.seed(0)
        img = Image.new("RGB", (32, 32))
        for _ in range(n):
            ra(img)
    finally:
        for op, fn in zip(ra.ops, originals):
            op.aug_fn = fn
    return drawn


@pytest.mark.parametrize("aa", ["rand-m7-mstd0.5-inc1", "rand-m9-mstd0.5", "rand-m10-n3", "rand-m5-mstd101"])
def test_randaugment_draws_follow_timms(aa):
    """Which ops apply and with which arguments: op counts within binomial noise of timm's,
    each op's argument distribution the same (KS), for policies with and without magnitude
    noise, three layers, and uniform magnitudes (mstd > 100 is timm's inf)."""
    train_tf, _ = build_transforms(make_config("A2", auto_augment=aa))
    augment = ba.batch_augment_for(train_tf, (32, 32))
    n = 6000
    timm = _timm_randaugment_draws(train_tf, n)
    np.random.seed(0)
    d = augment.draw_ops(n)
    ours = []
    for layer in range(augment.num_layers):
        for k, op in enumerate(augment.ops):
            rows = np.flatnonzero((d["index"][:, layer] == k) & d["applied"][:, layer])
            args = op.level(d["magnitude"][rows, layer], d["sign"][rows, layer], op.hparams, (32, 32))
            ours += [(op.name, a / 32 if op.name.endswith("Rel") else a) for a in args]  # timm's are fractions of the width
    names = [op.name for op in augment.ops]
    expected = n * augment.num_layers * 0.5 / len(names)
    for name in names:
        t = np.array([a for o, a in timm if o == name], dtype=float)
        o = np.array([a for o2, a in ours if o2 == name], dtype=float)
        sd = np.sqrt(expected)
        assert abs(len(t) - expected) < 5 * sd and abs(len(o) - expected) < 5 * sd, (name, len(t), len(o), expected)
        if np.ptp(np.concatenate([t, o])) > 0:
            assert stats.ks_2samp(t, o).pvalue > 1e-3, name
        else:
            assert np.array_equal(np.unique(t), np.unique(o)), name


@pytest.mark.parametrize("aa,hflip", [("rand-m7-mstd0.5-inc1", 0.0), ("rand-m9-mstd0.5-inc1", 0.5)])
def test_whole_transform_gives_timms_image_distribution(digits, aa, hflip):
    """The digits through both paths (timm's per sample, the compiled batch kernel): per-image
    mean, spread and left-right balance of the pixels in the same distribution (KS over 3,000
    images each)."""
    from rsb_tune.augment.transforms import fast_pil_ops
    from rsb_tune.data.registry import defer_normalize

    cfg = make_config("A2", auto_augment=aa, hflip=hflip)
    train_tf, _ = build_transforms(cfg)
    augment = ba.batch_augment_for(train_tf, (32, 32))
    per_sample, _ = defer_normalize(fast_pil_ops(train_tf))
    n, pool = 3000, digits.train.images
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    timm = np.stack([per_sample(Image.fromarray(pool[i % len(pool)])) for i in range(n)]).astype(float)
    np.random.seed(1)
    ours = np.concatenate([augment.augment_compiled(pool, np.arange(i, i + 100) % len(pool)) for i in range(0, n, 100)]).astype(float)
    for stat in (lambda a: a.mean(axis=(1, 2, 3)), lambda a: a.std(axis=(1, 2, 3)), lambda a: a[:, :, :16].mean(axis=(1, 2, 3)) - a[:, :, 16:].mean(axis=(1, 2, 3))):
        assert stats.ks_2samp(stat(timm), stat(ours)).pvalue > 1e-3


def test_normalised_output_matches_the_per_sample_tail(images):
    from rsb_tune.data.registry import BatchNormalize

    train_tf, _ = build_transforms(make_config("A2"))
    augment = ba.batch_augment_for(train_tf, (32, 32))
    np.random.seed(3)
    raw = augment.augment_compiled(images, np.arange(len(images)))  # what a CPU batch takes
    np.random.seed(3)
    out = augment(torch.from_numpy(images))
    norm = train_tf.transforms[-1]
    ref = BatchNormalize(norm.mean, norm.std)(torch.from_numpy(raw))
    assert out.shape == (len(images), 3, 32, 32) and torch.equal(out, ref) and out.stride() == ref.stride()


@pytest.mark.parametrize(
    "over,size,needle",
    [
        ({"re_prob": 0.25}, (32, 32), "RandomErasing"),
        ({"auto_augment": None, "color_jitter": 0.4}, (32, 32), "ColorJitter"),
        ({"auto_augment": "augmix-m5-w4-d2"}, (32, 32), "AugMix"),
        ({"auto_augment": "v0"}, (32, 32), "AutoAugment"),
        ({"interpolation": "nearest"}, (32, 32), "interpolation"),
        ({}, (48, 48), "larger than the crop"),
    ],
)
def test_transforms_without_a_batched_form_are_named(over, size, needle):
    train_tf, _ = build_transforms(make_config("A2", **over))
    with pytest.raises(ba.NotBatchable, match=needle):
        ba.batch_augment_for(train_tf, size)


def _small(digits, n=256):
    import dataclasses

    from rsb_tune.data.types import Split

    return dataclasses.replace(digits, train=Split(digits.train.images[:n], digits.train.labels[:n], "cut"))


def test_trial_on_the_batched_path_reruns_and_resumes_bit_identically(digits):
    from tests.test_trial import METRICS, run

    data = _small(digits)
    cfg = make_config("A2", epochs=3, seed=5, augment_impl="batch")
    full, ckpts = run(cfg, data)
    again, _ = run(cfg, data)
    resumed, _ = run(cfg, data, resume=ckpts[0])
    assert [r["runtime_augment"] for r in full] == ["batch"] * 3
    for a, b in zip(full, again):
        assert [a[k] for k in METRICS] == [b[k] for k in METRICS]
    for a, b in zip(full[1:], resumed):
        assert [a[k] for k in METRICS] == [b[k] for k in METRICS]
    pil, _ = run({**cfg, "augment_impl": "pil"}, data)  # other draws: another sample of the recipe
    assert pil[-1]["runtime_augment"] == "pil" and pil[-1]["train_loss"] != full[-1]["train_loss"]


def test_auto_batches_what_it_can_and_batch_refuses_what_it_cannot_do(digits):
    from rsb_tune.training.trial import build_trial

    assert build_trial(make_config("A2", epochs=1), digits).runtime.augment == "batch"
    assert build_trial(make_config("A2", epochs=1, re_prob=0.25), digits).runtime.augment == "pil"
    with pytest.raises(ValueError, match="augment_impl 'batch': .*RandomErasing"):
        build_trial(make_config("A2", epochs=1, augment_impl="batch", re_prob=0.25), digits)
