"""The embedded dataset, ImageFolder datasets and the transforms."""

import numpy as np
import pytest
from PIL import Image

from rsb_tune.data.registry import DATASETS, build_transforms, load_splits
from rsb_tune.errors import DataError
from tests.conftest import make_config


def test_digits_split_is_disjoint_stratified_and_fixed(digits):
    sizes = digits.sizes()
    assert sizes["n_train"] + sizes["n_val"] + sizes["n_v2"] == 1797
    assert digits.train.images.shape[1:] == (32, 32, 3) and digits.train.images.dtype == np.uint8
    # disjoint: no image appears in two splits
    keys = [{im.tobytes() for im in s.images} for s in (digits.train, digits.val, digits.v2)]
    dup_within = sum(len(s.images) for s in (digits.train, digits.val, digits.v2)) - sum(map(len, keys))
    assert not (keys[0] & keys[1]) or dup_within  # digits has a few duplicate images; splits are index-disjoint
    # stratified: every class in every split with the same share (±1 image)
    for split in (digits.val, digits.v2):
        counts = np.bincount(split.labels, minlength=10)
        expected = np.bincount(digits.train.labels, minlength=10) * len(split) / len(digits.train)
        assert np.all(np.abs(counts - expected) <= 2)
    again = load_splits("digits")
    assert np.array_equal(again.val.images, digits.val.images) and np.array_equal(again.v2.labels, digits.v2.labels)


def test_digits_cache_is_the_decode_and_survives_damage(tmp_path, monkeypatch):
    """The decoded digits kept in rsb-tune's cache directory (not the install tree) are the
    scikit-learn decode bit for bit; a truncated cache file is decoded again and replaced."""
    from rsb_tune.data import registry

    monkeypatch.setenv("RSB_TUNE_CACHE_DIR", str(tmp_path / "cache"))
    path = registry.digits_cache_file()
    assert path.parent == tmp_path / "cache" / "datasets" and not path.exists()
    fresh = registry._decode_digits()
    for attempt in ("decode and write", "read back", "after damage"):
        if attempt == "after damage":
            path.write_bytes(path.read_bytes()[:1000])
        got = registry._digits_arrays()
        assert path.is_file(), attempt
        assert set(got) == set(fresh), attempt
        for key, value in fresh.items():
            assert got[key].dtype == value.dtype and np.array_equal(got[key], value), (attempt, key)
    assert not list(path.parent.glob(".*.tmp"))


def test_profiles_only_hold_config_keys():
    from rsb_tune.planning.config import FIELDS

    for spec in DATASETS.values():
        assert set(spec.profile.values) <= set(FIELDS)
        assert set(spec.profile.why) <= set(spec.profile.values) | {"epoch_scale"}


def _folder(root, splits, classes, n=3, size=12):
    rng = np.random.default_rng(0)
    for split in splits:
        for c in classes.get(split, classes["train"]):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_image_folder_with_v2(tmp_path):
    _folder(tmp_path, ["train", "val", "v2"], {"train": ["cat", "dog"]})
    s = load_splits("folder", str(tmp_path))
    assert s.classes == ("cat", "dog") and len(s.train) == 6 and len(s.v2) == 6
    assert s.train.decoded and s.info["storage"] == "memory"  # a few KB: decoded once, trained from memory


def test_image_folder_without_v2(tmp_path):
    _folder(tmp_path, ["train", "val"], {"train": ["a", "b"]})
    assert load_splits("folder", str(tmp_path)).v2 is None


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda root: None, "no such directory"),
        (lambda root: root.mkdir(), "missing sub-folder(s) train, val"),
        (lambda root: _folder(root, ["train"], {"train": ["a"]}), "missing sub-folder(s) val"),
        (lambda root: _folder(root, ["train", "val"], {"train": ["a", "b"], "val": ["a", "c"]}), "missing in val: ['b']; not in train: ['c']"),
        (lambda root: [(root / "train" / "a").mkdir(parents=True), (root / "val" / "a").mkdir(parents=True)], "no images"),
    ],
)
def test_image_folder_errors(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(DataError) as e:
        load_splits("folder", str(root))
    assert message in str(e.value)


def test_transforms_follow_the_config(digits):
    cfg = make_config()
    train_tf, eval_tf = build_transforms(cfg)
    names = [type(t).__name__ for t in train_tf.transforms]
    assert names[0] == "RandomResizedCropAndInterpolation" and "RandAugment" in names
    assert "RandomHorizontalFlip" not in names  # the digits profile turns flips off, visibly
    assert train_tf.transforms[0].scale == (cfg["scale_min"], 1.0)
    x = eval_tf(Image.fromarray(digits.val.images[0]))
    assert tuple(x.shape) == (3, 32, 32)


def test_high_magnitude_randaugment_survives_zero_bit_posterize(digits):
    """rand-m9-mstd0.5 reaches magnitude 10, where timm asks Pillow for 0-bit posterize."""
    import random

    cfg = make_config(auto_augment="rand-m10-mstd0.5-inc1-n3")
    train_tf, _ = build_transforms(cfg)
    random.seed(0)
    img = Image.fromarray(digits.train.images[0])
    for _ in range(200):
        train_tf(img)
    from timm.data import auto_augment as aa

    black = aa.NAME_TO_OP["PosterizeIncreasing"](img, 0)
    assert np.asarray(black).max() == 0
