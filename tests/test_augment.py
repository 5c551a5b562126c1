"""rsb_tune.augment.transforms gives timm's training images bit for bit, from the same random streams."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from rsb_tune.augment.transforms import FAST_OPS, fast_pil_ops
from tests.conftest import make_config


def _images(digits, n=200, gray=False):
    from rsb_tune.data.registry import SplitDataset

    ds = SplitDataset(digits.train, None)
    rgb = [ds.image(i) for i in range(n)]
    g = np.random.default_rng(0)  # colour images too: bands differ, full 0..255 range
    rgb += [Image.fromarray(g.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(50)]
    rgb += [Image.fromarray(np.full((32, 32, 3), 77, np.uint8))]  # a flat image: degenerate tables
    return rgb + ([im.convert("L") for im in rgb[:50]] if gray else [])  # timm's geometric ops need RGB


def _draw(transform, images, n):
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    return [np.asarray(transform(images[i % len(images)])) for i in range(n)]


@pytest.mark.parametrize(
    "aa,hflip",
    [("rand-m7-mstd0.5-inc1", 0.0), ("rand-m9-mstd0.5-inc1", 0.5), ("rand-m6-mstd0.5-inc1", 0.0), ("rand-m10-n3", 0.0), ("rand-m9-mstd0.5", 0.0)],
)
def test_train_transform_gives_timms_images(digits, aa, hflip):
    from rsb_tune.data.registry import build_transforms, defer_normalize

    timm_tf, _ = defer_normalize(build_transforms(make_config("A2", auto_augment=aa, hflip=hflip))[0])
    fast = fast_pil_ops(timm_tf)
    names = [type(t).__name__ for t in fast.transforms]
    assert "FastRandAugment" in names and "FastRandomResizedCrop" in names
    import pickle

    fast = pickle.loads(pickle.dumps(fast))  # loader workers started with spawn get a pickled copy
    images = _images(digits)
    a, b = _draw(timm_tf, images, 3000), _draw(fast, images, 3000)
    assert all(x.shape == y.shape and np.array_equal(x, y) for x, y in zip(a, b))
    # and the random streams are left where timm leaves them
    _draw(timm_tf, images, 500)
    after_timm = (random.random(), np.random.rand(), torch.rand(1).item())
    _draw(fast, images, 500)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == after_timm


@pytest.mark.parametrize("name", sorted(FAST_OPS))
def test_each_table_op_equals_timms_at_every_magnitude(digits, name):
    from timm.data.auto_augment import AugmentOp, RandAugment

    from rsb_tune.augment.transforms import _fast_randaugment, _originals
    from rsb_tune.data.registry import _posterize_zero_bits_compat

    _posterize_zero_bits_compat()
    _originals()
    images = _images(digits, n=60, gray=True)
    for m in np.linspace(0, 10, 21):
        op = AugmentOp(name, prob=1.0, magnitude=float(m))
        fast = _fast_randaugment(RandAugment([op], num_layers=1)).ops[0]
        assert fast.aug_fn is FAST_OPS[name] and op.aug_fn is not FAST_OPS[name]
        for im in images:
            assert np.array_equal(np.asarray(op(im)), np.asarray(fast(im))), (name, m, im.mode)


def test_timm_transform_is_not_modified_and_others_pass_through(digits):
    from rsb_tune.data.registry import build_transforms

    train, evaluate = build_transforms(make_config("A2"))
    before = [type(t) for t in train.transforms], [op.aug_fn for op in train.transforms[1].ops]
    fast_pil_ops(train)
    assert ([type(t) for t in train.transforms], [op.aug_fn for op in train.transforms[1].ops]) == before
    assert fast_pil_ops(evaluate) is evaluate  # no crop or RandAugment to replace
