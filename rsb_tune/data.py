"""Datasets by name, their run profiles, decoding once per study, and timm transforms.

Two datasets are registered:

``digits``
    The embedded default: scikit-learn's bundled handwritten digits (1,797 real 8x8 images,
    10 classes), upsampled once to 32 px RGB and split once - with a fixed seed that never
    depends on the trial seed - into three disjoint class-stratified sets ``train`` (60 %),
    ``val`` (20 %) and ``v2`` (20 %). ``v2`` plays the role ImageNet-V2 plays in the paper: a
    second held-out test set (here of the same distribution).
``folder``
    A local ImageFolder root (``--data PATH``) with ``train/`` and ``val/`` and an optional
    ``v2/``, whose class folders must match.

A :class:`Profile` scales a recipe to a dataset: the model, image size, batch size, the epoch
scale, and the augmentation changes the dataset needs. Every value it sets is a trial-config
key, so it shows in the resolved config with ``profile <name>`` as its source.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rsb_tune.errors import ConfigError, DataError, suggest

__all__ = [
    "Profile",
    "DatasetSpec",
    "DATASETS",
    "Split",
    "DatasetSplits",
    "get_dataset",
    "load_splits",
    "build_transforms",
    "SplitDataset",
    "BatchNormalize",
    "defer_normalize",
]


@dataclasses.dataclass(frozen=True)
class Profile:
    """Run-level defaults for one dataset. ``epoch_scale`` multiplies a recipe's epochs (so the
    A1:A2:A3 ratio is kept); ``values`` are trial-config keys; ``why`` explains adjustments."""

    name: str
    epoch_scale: float
    values: Mapping[str, Any]
    why: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: decoded uint8 images (N, H, W, 3) or file paths, and integer labels."""

    images: np.ndarray | Sequence[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def decoded(self) -> bool:
        return isinstance(self.images, np.ndarray)


@dataclasses.dataclass(frozen=True)
class DatasetSplits:
    """What a study decodes once and shares with every trial (through Ray's object store)."""

    name: str
    classes: tuple[str, ...]
    train: Split
    val: Split
    v2: Split | None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train), "n_val": len(self.val), "n_v2": len(self.v2) if self.v2 else 0}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    description: str
    profile: Profile
    load: Callable[[str | None], DatasetSplits]


DIGITS_SPLIT_SEED = 20211006  # fixed forever: the split never depends on a trial seed
DIGITS_SIZE = 32


def _load_digits(_path: str | None = None) -> DatasetSplits:
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

    def split(ix):
        ix = np.sort(ix)
        return Split(images=images[ix], labels=labels[ix])

    return DatasetSplits("digits", tuple(str(c) for c in bunch.target_names), split(train_idx), split(val_idx), split(v2_idx))


def _image_folder(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    classes = sorted(e.name for e in os.scandir(path) if e.is_dir())
    if not classes:
        raise DataError(f"{path}: no class folders")
    try:
        samples = make_dataset(str(path), {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS, allow_empty=True)
    except (OSError, FileNotFoundError) as e:
        raise DataError(f"{path}: {e}") from None
    if not samples:
        raise DataError(f"{path}: no images (extensions {', '.join(IMG_EXTENSIONS)})")
    files, labels = zip(*samples)
    return classes, list(files), np.asarray(labels, dtype=np.int64)


def _load_folder(path: str | None) -> DatasetSplits:
    if not path:
        raise DataError("dataset 'folder' needs a path: --data PATH")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"--data {path}: no such directory")
    missing = [s for s in ("train", "val") if not (root / s).is_dir()]
    if missing:
        raise DataError(f"--data {path}: missing sub-folder(s) {', '.join(missing)}/ (expected train/, val/ and optional v2/)")
    splits: dict[str, Split | None] = {"v2": None}
    classes = None
    for name in ("train", "val", "v2"):
        sub = root / name
        if not sub.is_dir():
            continue
        cls, files, labels = _image_folder(sub)
        if classes is None:
            classes = cls
        elif cls != classes:
            only_train = sorted(set(classes) - set(cls))
            only_here = sorted(set(cls) - set(classes))
            raise DataError(
                f"--data {path}: class folders of {name}/ differ from train/: "
                f"missing in {name}/: {only_train or 'none'}; not in train/: {only_here or 'none'}"
            )
        splits[name] = Split(images=files, labels=labels)
    return DatasetSplits("folder", tuple(classes), splits["train"], splits["val"], splits["v2"])


DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "digits": DatasetSpec(
            name="digits",
            description="embedded: scikit-learn's 8x8 handwritten digits at 32 px, 1,078 train / 359 val / 360 v2",
            profile=Profile(
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
            ),
            load=_load_digits,
        ),
        "folder": DatasetSpec(
            name="folder",
            description="a local ImageFolder root given with --data PATH (train/, val/, optional v2/)",
            profile=Profile(
                name="folder",
                epoch_scale=1.0,
                values={"model": "resnet50", "batch_size": 256},
                why={"batch_size": "256 fits one 32 GB GPU at 224 px; the lr is rescaled from 2048"},
            ),
            load=_load_folder,
        ),
    }
)


def get_dataset(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}{suggest(name, DATASETS)}")
    return DATASETS[name]


def load_splits(dataset: str, data_path: str | None = None) -> DatasetSplits:
    """Decode (digits) or index (folder) a dataset once; the result is shared by all trials."""
    return get_dataset(dataset).load(data_path)


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
        with open(self.split.images[i], "rb") as f:
            return Image.open(f).convert("RGB")

    def __getitem__(self, i: int):
        return self.transform(self.image(i)), int(self.split.labels[i])


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
