"""Datasets by name, their run profiles, decoding once per study, and timm transforms.

Registered datasets (timm's names; see :mod:`rsb_tune.data.readers` for the readers):

``digits``
    The embedded default: scikit-learn's bundled handwritten digits (1,797 real 8x8 images,
    10 classes), upsampled once to 32 px RGB and split once - with a fixed seed that never
    depends on the trial seed - into three disjoint class-stratified sets ``train`` (60 %),
    ``val`` (20 %) and ``v2`` (20 %). ``v2`` plays the role ImageNet-V2 plays in the paper: a
    second held-out test set (here of the same distribution).
``digits-parity``
    The embedded transfer target (``rsb-tune finetune`` of a digits study defaults to it): the
    same images and the same three splits as ``digits``, labelled ``even`` / ``odd``. A fair
    transfer test: the label space is new (2 classes where the source had 10, so the head is
    new and trained from scratch), the images are of the source's domain, and the splits are the
    source's, so no image a fine-tuned model is scored on (``val``, ``v2``) was seen in either
    stage. It is an easy transfer (the source's features separate the digits already), as
    ImageNet to CIFAR-10 is: it shows the machinery and the seed spread, not transfer's limits.
``folder``
    A local root (``--data PATH``) with ``train/`` and ``val/`` and an optional ``v2/`` (folders
    or ``.tar`` files of class folders, or one ``.tar`` holding them), whose classes must match.
``torch/cifar10``, ``torch/cifar100``, ``torch/mnist``, ``torch/fashion_mnist``, ``torch/kmnist``, ``torch/qmnist``
    torchvision's readers under ``--data-dir ROOT`` (never downloaded): train as ``train``, the
    test set as ``val``; ``v2_path`` adds a second test set (CIFAR-10.1's ``.npy`` pair).

A :class:`Profile` scales a recipe to a dataset: the model, image size, batch size, the epoch
scale, and the augmentation changes the dataset needs. Every value it sets is a trial-config
key, so it shows in the resolved config with ``profile <name>`` as its source.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from rsb_tune.data.types import DataOptions, DatasetSpec, DatasetSplits, Profile, Split, data_spec
from rsb_tune.errors import ConfigError, DataError, suggest

__all__ = [
    "Profile",
    "DatasetSpec",
    "DATASETS",
    "Split",
    "DatasetSplits",
    "get_dataset",
    "load_splits",
    "data_spec",
    "StudyData",
    "load_study_data",
    "data_summary",
    "build_transforms",
    "SplitDataset",
    "DecodedBatches",
    "BatchNormalize",
    "defer_normalize",
]


DIGITS_SPLIT_SEED = 20211006  # fixed forever: the split never depends on a trial seed
DIGITS_SIZE = 32


DIGITS_PARTS = (("train", "60 %"), ("val", "20 %"), ("v2", "other 20 %"))


def _decode_digits() -> dict[str, np.ndarray]:
    """scikit-learn's bundled digits upsampled to 32 px RGB and split 60/20/20 (stratified, seed
    :data:`DIGITS_SPLIT_SEED`): ``{part}_images``, ``{part}_labels`` for each of
    :data:`DIGITS_PARTS`."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    raw = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8) in 0..16 -> 0..255
    big = np.stack([np.asarray(Image.fromarray(im).resize((DIGITS_SIZE, DIGITS_SIZE), Image.BICUBIC)) for im in raw])
    images = np.ascontiguousarray(np.repeat(big[..., None], 3, axis=-1))
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, rest = train_test_split(idx, train_size=0.6, stratify=labels, random_state=DIGITS_SPLIT_SEED)
    val_idx, v2_idx = train_test_split(rest, train_size=0.5, stratify=labels[rest], random_state=DIGITS_SPLIT_SEED)
    out = {}
    for (part, _), ix in zip(DIGITS_PARTS, (train_idx, val_idx, v2_idx)):
        ix = np.sort(ix)
        out[f"{part}_images"], out[f"{part}_labels"] = images[ix], labels[ix]
    return out


def digits_cache_file() -> Path:
    """Where the decoded digits are kept between runs (rsb-tune's cache directory, never the
    install tree), named by what the decode depends on: scikit-learn's and Pillow's versions,
    the split seed and the size."""
    from importlib.metadata import version

    from rsb_tune.store.backends import cache_dir

    return cache_dir() / "datasets" / f"digits-{DIGITS_SIZE}px-{DIGITS_SPLIT_SEED}-sklearn{version('scikit-learn')}-pillow{version('pillow')}.npz"


def _digits_arrays() -> dict[str, np.ndarray]:
    """The decoded digits, from the cache file when it is there and whole (importing
    scikit-learn and decoding cost ~1 s a process), else decoded and written there (atomically;
    a cache that cannot be written is skipped)."""
    import zipfile

    from rsb_tune.store.backends import replacing

    path = digits_cache_file()
    keys = {f"{part}_{what}" for part, _ in DIGITS_PARTS for what in ("images", "labels")}
    try:
        with np.load(path, allow_pickle=False) as npz:
            if set(npz.files) == keys:
                return {k: npz[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        pass  # absent, partial or corrupt: decoded again and replaced
    arrays = _decode_digits()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError:  # a cache that cannot be written: decoded again next time
        pass
    return arrays


def _load_digits(_opts=None) -> DatasetSplits:
    arrays = _digits_arrays()

    def split(part, share):
        return Split(images=arrays[f"{part}_images"], labels=arrays[f"{part}_labels"], source=f"sklearn load_digits, {share} (split seed {DIGITS_SPLIT_SEED})")

    train, val, v2 = (split(part, share) for part, share in DIGITS_PARTS)
    return DatasetSplits("digits", tuple(str(c) for c in range(10)), train, val, v2)


def _load_digits_parity(_opts=None) -> DatasetSplits:
    """``digits`` relabelled even (0) / odd (1): the same images in the same splits."""
    digits = _load_digits()

    def parity(split: Split) -> Split:
        return dataclasses.replace(split, labels=split.labels % 2, source=f"{split.source}, labels: digit parity")

    return DatasetSplits("digits-parity", ("even", "odd"), parity(digits.train), parity(digits.val), parity(digits.v2))


def _load_folder(opts) -> DatasetSplits:
    from rsb_tune.data.readers import load_folder

    return load_folder(opts)


def _torch_loader(name: str):
    def load(opts) -> DatasetSplits:
        from rsb_tune.data.readers import load_torch

        return load_torch(name, opts)

    return load


_CIFAR = Profile(
    name="cifar10",
    epoch_scale=0.2,  # A1/A2/A3 = 120/60/20 epochs
    values={
        "model": "resnet18_cifar",
        "img_size": 32,
        "test_img_size": 32,
        "crop_pct": 1.0,
        "batch_size": 512,
        "scale_min": 0.35,
        "hflip": 0.5,
        "lr_scale": "sqrt",
        "eval_batch_size": 1024,
    },
    why={
        "model": "timm's ResNet-18 with a CIFAR stem (3x3 stride-1 conv, no max-pool; registered by rsb_tune.training.models): "
        "the ImageNet stem would shrink 32 px to 8x8 before the first stage",
        "img_size": "CIFAR's native 32 px: no upsampling",
        "crop_pct": "1.0: evaluate the whole 32 px image (the 0.95 centre crop is an ImageNet habit)",
        "batch_size": "512: ~97 updates per epoch on 50,000 images; the lr is rescaled from the recipe's 2048",
        "epoch_scale": "0.2 of the paper's epochs keeps A1:A2:A3 = 6:3:1 (120/60/20); A2 = ~5,900 updates",
        "lr_scale": "timm's rule for LAMB: lr x sqrt(512/2048) = 0.5x (A2: 2.5e-3); ~5,900 updates are enough for the rule, "
        "unlike digits' 240 (not tuned here: check with a grid over lr)",
        "scale_min": "timm's RandomResizedCrop at 32 px: a 0.08 crop keeps ~9x9 pixels; 0.35 keeps the object "
        "(the pad-4 random crop of CIFAR papers keeps 0.77 of it; timm's transform has no pad-crop)",
        "hflip": "on: a mirrored airplane or cat is the same class",
        "eval_batch_size": "1024 images of 32 px: 10,000 test images in 10 forwards",
    },
)

_MNIST = dataclasses.replace(
    _CIFAR,
    name="mnist",
    epoch_scale=0.1,  # A1/A2/A3 = 60/30/10
    values={**_CIFAR.values, "img_size": 28, "test_img_size": 28, "hflip": 0.0},
    why={
        **_CIFAR.why,
        "img_size": "the MNIST family's native 28 px (grey, read as RGB)",
        "hflip": "a mirrored digit or letter is another shape",
        "epoch_scale": "0.1 of the paper's epochs keeps A1:A2:A3 = 6:3:1 (60/30/10); 60,000 images converge faster than CIFAR",
        "batch_size": "512: ~117 updates per epoch on 60,000 images; the lr is rescaled from the recipe's 2048",
    },
)


def _torch_spec(name: str, profile: Profile, description: str) -> DatasetSpec:
    return DatasetSpec(name=name, description=description, profile=profile, load=_torch_loader(name))


_DIGITS_PROFILE = Profile(
    name="digits",
    epoch_scale=0.05,  # A1/A2/A3 = 30/15/5 epochs
    values={
        "model": "resnet10t",
        "model_kwargs": {"channels": [16, 32, 64, 128], "stem_width": 16},
        "img_size": 32,
        "test_img_size": 32,
        "batch_size": 64,
        "hflip": 0.0,
        "scale_min": 0.35,
        "lr_scale": "none",
        "channels_last": "on",
    },
    why={
        "model_kwargs": "a narrow resnet10t (0.3 M parameters): a 100-seed study fits a laptop CPU",
        "img_size": "the 8x8 digits are upsampled once to 32 px",
        "hflip": "a mirrored digit is another shape (2 vs 5, 3 vs E)",
        "scale_min": "a 0.08 crop of a 32 px digit keeps a few pixels of one stroke",
        "epoch_scale": "0.05 of the paper's epochs keeps A1:A2:A3 = 6:3:1",
        "channels_last": "on CPU too: timm's max-pool is ~10x faster channels-last; +26 % train, +48 % eval throughput",
        "lr_scale": "240 updates instead of ~190,000: the sqrt rule's 0.18x lr leaves A2 at ~47 % val after 15 epochs; "
        "the recipe's lr unscaled reaches ~96 %",
    },
)


DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "digits": DatasetSpec(
            name="digits",
            description="embedded: scikit-learn's 8x8 handwritten digits at 32 px, 1,078 train / 359 val / 360 v2",
            profile=_DIGITS_PROFILE,
            load=_load_digits,
        ),
        "digits-parity": DatasetSpec(
            name="digits-parity",
            description="embedded transfer target: the digits' images and splits labelled even / odd (2 classes; the default target of `rsb-tune finetune` from digits)",
            profile=dataclasses.replace(_DIGITS_PROFILE, name="digits-parity"),
            load=_load_digits_parity,
        ),
        "folder": DatasetSpec(
            name="folder",
            description="a local root given with --data PATH: train/, val/, optional v2/ (folders or .tar files of class folders), or one .tar of them",
            profile=Profile(
                name="folder",
                epoch_scale=1.0,
                values={"model": "resnet50", "batch_size": 256},
                why={"batch_size": "256 fits one 32 GB GPU at 224 px; the lr is rescaled from 2048"},
            ),
            load=_load_folder,
        ),
        "torch/cifar10": _torch_spec("torch/cifar10", _CIFAR, "CIFAR-10 python batches under --data-dir ROOT: 50,000 train / 10,000 test (as val) at 32 px"),
        "torch/cifar100": _torch_spec("torch/cifar100", dataclasses.replace(_CIFAR, name="cifar100"), "CIFAR-100 python files under --data-dir ROOT: 50,000 train / 10,000 test (as val)"),
        "torch/mnist": _torch_spec("torch/mnist", _MNIST, "MNIST idx files under --data-dir ROOT: 60,000 train / 10,000 test (as val) at 28 px"),
        "torch/fashion_mnist": _torch_spec("torch/fashion_mnist", _MNIST, "Fashion-MNIST idx files under --data-dir ROOT (test as val)"),
        "torch/kmnist": _torch_spec("torch/kmnist", _MNIST, "Kuzushiji-MNIST idx files under --data-dir ROOT (test as val)"),
        "torch/qmnist": _torch_spec("torch/qmnist", _MNIST, "QMNIST files under --data-dir ROOT (test as val)"),
    }
)


_PREFIXES = {
    "hfds": ("load_hfds", "a Hugging Face dataset saved with save_to_disk at --data-dir ROOT"),
    "wds": ("load_wds", "WebDataset shards (train-*.tar, validation-*.tar) at --data-dir ROOT"),
}


def _prefixed_spec(name: str) -> DatasetSpec:
    """timm's ``hfds/NAME`` and ``wds/NAME``: any such dataset, with the folder profile."""
    prefix = name.partition("/")[0].lower()
    loader, description = _PREFIXES[prefix]

    def load(opts) -> DatasetSplits:
        from rsb_tune.data import readers as datasets

        return getattr(datasets, loader)(name, opts)

    return DatasetSpec(name=name, description=description, profile=dataclasses.replace(DATASETS["folder"].profile, name=prefix), load=load)


def get_dataset(name: str) -> DatasetSpec:
    prefix, sep, rest = name.partition("/")
    if sep and rest and prefix.lower() in _PREFIXES:
        return _prefixed_spec(name)
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}, hfds/NAME, wds/NAME{suggest(name, DATASETS)}")
    return DATASETS[name]


def load_splits(config: str | Mapping[str, Any], data_path: str | None = None, *, decode: bool = True) -> DatasetSplits:
    """A study's splits, loaded once and shared by all its trials: ``config`` is a resolved
    config (its ``dataset``, ``data_path``, ``v2_path``, ``val_holdout``, ``val_holdout_seed``
    and ``memory_budget_mb``) or a dataset name with ``data_path``. Splits that fit the memory
    budget are decoded (unless ``decode`` is false: ``--dry-run`` only indexes); others stream."""
    from rsb_tune.data.readers import finish_splits

    if isinstance(config, str):
        config = {"dataset": config, "data_path": data_path}
    opts = DataOptions.from_config(config)
    spec = get_dataset(config.get("dataset", "digits"))
    return finish_splits(spec.load(opts), opts, decode=decode)


@dataclasses.dataclass(frozen=True)
class StudyData:
    """What a study's driver loads once and ships to every trial (through Ray's object store):
    the splits of each distinct data spec its trials name. A trial takes its own with
    :meth:`for_config`; a study over one dataset has one entry."""

    splits: Mapping[tuple, DatasetSplits]

    def for_config(self, config: Mapping[str, Any]) -> DatasetSplits:
        """The splits the trial of ``config`` trains on."""
        spec = data_spec(config)
        if spec not in self.splits:
            raise DataError(f"no data was loaded for {dict(spec)} (the study loaded {[dict(k) for k in self.splits]})")
        return self.splits[spec]

    def records(self) -> list[dict[str, Any]]:
        """What study.yaml records of each: its spec, split sizes and description."""
        return [{"spec": dict(spec), "sizes": data.sizes(), "data": data.describe()} for spec, data in self.splits.items()]


def load_study_data(configs: Sequence[Mapping[str, Any]], *, decode: bool = True) -> StudyData:
    """The splits of every distinct data spec among ``configs`` (a study's trials), each loaded
    once with :func:`load_splits`, in the order the configs first name them."""
    splits: dict[tuple, DatasetSplits] = {}
    for config in configs:
        spec = data_spec(config)
        if spec not in splits:
            splits[spec] = load_splits(config, decode=decode)
    return StudyData(splits)


def data_summary(spec: DatasetSpec, data: DatasetSplits) -> str:
    """The ``--dry-run`` lines about the data: the profile's reasons, the splits, the storage."""
    lines = [f"dataset {spec.name} (profile {spec.profile.name}): {spec.description}"]
    lines += [f"  why {key}: {why}" for key, why in spec.profile.why.items()]
    for name, s in data.describe()["splits"].items():
        lines.append(f"  split {name}: {s['n']} images from {s['from']}")
    if "val_holdout" in data.info:
        h = data.info["val_holdout"]
        lines.append(f"  val held out of train: {h['fraction']:.0%}, seed {h['seed']}; not used: {h['unused']}")
    lines.append(f"  storage: {data.info['storage']} ({data.info['why']})")
    return "\n".join(lines)


def _posterize_zero_bits_compat() -> None:
    """timm's RandAugment asks for posterize with 0 bits at magnitude 10 (reached by rand-m9
    with mstd 0.5); Pillow >= 13 rejects 0 bits where older Pillow returned a black image.
    Restore the old result for that one case so high-magnitude RandAugment strings work."""
    from PIL import ImageOps
    from timm.data import auto_augment as aa

    if getattr(aa.posterize, "_rsb_compat", False):
        return

    def posterize(img, bits_to_keep, **kw):
        if bits_to_keep <= 0:
            return ImageOps.posterize(img, 1).point(lambda _: 0)
        return original(img, bits_to_keep, **kw)

    original = aa.posterize
    posterize._rsb_compat = True
    aa.posterize = posterize
    for name, op in list(aa.NAME_TO_OP.items()):
        if op is original:
            aa.NAME_TO_OP[name] = posterize


def build_transforms(config: Mapping[str, Any]):
    """timm train and eval transforms for a resolved trial config: random-resized crop, flip,
    RandAugment, bicubic; eval resize + centre crop at ``crop_pct``."""
    from timm.data import create_transform

    _posterize_zero_bits_compat()

    train = create_transform(
        input_size=config["img_size"],
        is_training=True,
        scale=(config["scale_min"], 1.0),
        hflip=config["hflip"],
        color_jitter=config["color_jitter"],
        auto_augment=config["auto_augment"],
        interpolation=config["interpolation"],
        re_prob=config["re_prob"],
    )
    evaluate = create_transform(
        input_size=config["test_img_size"],
        is_training=False,
        interpolation=config["interpolation"],
        crop_pct=config["crop_pct"],
    )
    return train, evaluate


class SplitDataset:
    """A torch-style dataset over a :class:`Split` (decoded arrays or image files). A decoded
    split's PIL images are made once, on first use, and reused every epoch (timm's transforms
    never modify their input image)."""

    def __init__(self, split: Split, transform):
        self.split = split
        self.transform = transform
        self._pil: list | None = None

    def __len__(self) -> int:
        return len(self.split)

    def image(self, i: int):
        """Sample ``i`` as an RGB PIL image."""
        from PIL import Image

        if self.split.decoded:
            if self._pil is None:
                self._pil = [None] * len(self.split)
            img = self._pil[i]
            if img is None:
                img = self._pil[i] = Image.fromarray(self.split.images[i])
            return img
        ref = self.split.images[i]  # a lazy source yields RGB PIL images; a path is opened here
        if isinstance(ref, str):
            with open(ref, "rb") as f:
                return Image.open(f).convert("RGB")
        return ref

    def __getitem__(self, i: int):
        return self.transform(self.image(i)), int(self.split.labels[i])


class DecodedBatches:
    """A torch-style dataset over a decoded split of one image size whose batches are fetched
    whole (``DataLoader`` calls ``__getitems__``): ``(B, H, W, C)`` uint8 and ``(B,)`` int64
    labels, for :class:`rsb_tune.augment.batched.BatchAugment`."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices):
        import torch

        idx = np.asarray(indices, dtype=np.int64)
        return torch.from_numpy(self.split.images[idx]), torch.from_numpy(np.asarray(self.split.labels[idx], dtype=np.int64))

    def __getitem__(self, i: int):
        x, y = self.__getitems__([i])
        return x[0], y[0]


class BatchNormalize:
    """The ``ToTensor`` + ``Normalize`` tail of a per-sample transform, done once per batch:
    uint8 (B, H, W, C) -> float (B, C, H, W), divided by 255, minus ``mean``, over ``std``.
    These are the same float operations, element by element, as the per-sample tail (so the
    values are bit-identical), at a fraction of the cost; on CUDA the batch crosses to the
    device as uint8 (a quarter of the bytes) and is normalised there."""

    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, x):
        import torch
        from torchvision.transforms.functional import normalize

        x = x.permute(0, 3, 1, 2).to(dtype=torch.get_default_dtype()).div(255)
        return normalize(x, self.mean, self.std, inplace=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


def _to_uint8_hwc(img) -> np.ndarray:
    from PIL import Image

    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL image before ToTensor, got {type(img).__name__}")
    return np.array(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)


def defer_normalize(transform) -> tuple[Any, BatchNormalize | None]:
    """Split a transform that ends in ``ToTensor, Normalize`` (timm's train and eval transforms
    without random erasing) into a per-sample part that returns a uint8 HWC array and a
    :class:`BatchNormalize` for the collated batch. Any other transform comes back unchanged,
    with ``None``."""
    from timm.data.transforms import MaybeToTensor
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", None) or [])
    if len(steps) < 2 or type(steps[-2]) not in (T.ToTensor, MaybeToTensor) or type(steps[-1]) is not T.Normalize or steps[-1].inplace:
        return transform, None
    return T.Compose([*steps[:-2], _to_uint8_hwc]), BatchNormalize(steps[-1].mean, steps[-1].std)
