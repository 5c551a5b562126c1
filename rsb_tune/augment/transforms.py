"""Cheaper per-sample augmentation that gives timm's images bit for bit.

A 32 px training sample spends most of its data time in RandAugment, and most of that not in
pixels but in Python: ``np.random.choice`` over the op list (it converts the list to an array
on every call) and the lookup tables Pillow's ``ImageOps`` rebuilds in Python loops on every
call (autocontrast, equalize, invert, solarize, posterize; timm's solarize-add).
:func:`fast_pil_ops` returns a copy of a timm transform where:

- ``RandAugment`` draws its ops with ``np.random.randint`` - exactly the draw
  ``RandomState.choice(ops, n, replace=True)`` makes (same numbers from the same stream);
- those lookup-table ops compute the same table from the image's extrema or histogram with
  cached or vectorised arithmetic and apply it with the same ``Image.point`` call.

- the random-resized crop makes Pillow's ``crop`` and ``resize`` calls directly (torchvision's
  ``resized_crop`` makes the same two calls for a PIL image, after checks that cost a third).

Every other op, the flips and the random draws are timm's own objects, untouched, so
each image is identical to timm's (``tests/test_augment.py`` checks that over thousands of
draws, every op at every magnitude). Images in modes other than L and RGB go to the original
ops. The timm transform passed in is not modified.
"""

from __future__ import annotations

import copy
import functools
import random
from typing import Any

import numpy as np
from PIL import Image
from timm.data.auto_augment import RandAugment
from timm.data.transforms import RandomResizedCropAndInterpolation
from torchvision.transforms.functional import pil_modes_mapping

# (imported by the trial inside build_trial, so timm's import cost is not paid by the CLI)

__all__ = ["fast_pil_ops", "FAST_OPS", "FastRandAugment", "FastRandomResizedCrop"]


def _apply(img, band_luts: list[list[int]]):
    """Pillow's ``ImageOps._lut`` for L and RGB: one 256-entry table per band."""
    if len(band_luts) == 1:
        return img.point(band_luts[0] * len(img.getbands()))
    lut: list[int] = []
    for b in band_luts:
        lut += b
    return img.point(lut)


@functools.lru_cache(maxsize=None)
def _invert_lut() -> list[int]:
    return list(range(255, -1, -1))


@functools.lru_cache(maxsize=4096)
def _solarize_lut(threshold) -> list[int]:
    return [i if i < threshold else 255 - i for i in range(256)]


@functools.lru_cache(maxsize=4096)
def _solarize_add_lut(add, threshold) -> list[int]:
    return [min(255, i + add) if i < threshold else i for i in range(256)]


@functools.lru_cache(maxsize=16)
def _posterize_lut(bits: int) -> list[int]:
    mask = ~(2 ** (8 - bits) - 1)
    return [i & mask for i in range(256)]


@functools.lru_cache(maxsize=4096)
def _autocontrast_lut(lo: int, hi: int) -> list[int]:
    """Pillow's autocontrast table (cutoff 0, no ignore, no mask) for a band spanning lo..hi."""
    if hi <= lo:
        return list(range(256))
    scale = 255.0 / (hi - lo)
    offset = -lo * scale
    return [min(255, max(0, int(ix * scale + offset))) for ix in range(256)]


def _equalize_lut(h: np.ndarray) -> list[int]:
    """Pillow's equalize table for one band's 256-bin histogram, in integer numpy arithmetic."""
    nz = h[h != 0]
    if len(nz) <= 1:
        return list(range(256))
    step = int((nz.sum() - nz[-1]) // 255)
    if not step:
        return list(range(256))
    n = step // 2 + np.concatenate(([0], np.cumsum(h[:-1], dtype=np.int64)))
    return (n // step).tolist()


def _bands(img) -> bool:
    return img.mode in ("L", "RGB")


def auto_contrast(img, **kw):
    if not _bands(img):
        return _ORIGINAL["AutoContrast"](img, **kw)
    ext = img.getextrema()
    ext = [ext] if img.mode == "L" else ext
    return _apply(img, [_autocontrast_lut(lo, hi) for lo, hi in ext])


def equalize(img, **kw):
    if not _bands(img):
        return _ORIGINAL["Equalize"](img, **kw)
    h = np.asarray(img.histogram(), dtype=np.int64).reshape(-1, 256)
    return _apply(img, [_equalize_lut(band) for band in h])


def invert(img, **kw):
    return _apply(img, [_invert_lut()]) if _bands(img) else _ORIGINAL["Invert"](img, **kw)


def solarize(img, thresh, **kw):
    return _apply(img, [_solarize_lut(thresh)]) if _bands(img) else _ORIGINAL["Solarize"](img, thresh, **kw)


def solarize_add(img, add, thresh=128, **kw):
    return _apply(img, [_solarize_add_lut(add, thresh)]) if _bands(img) else _ORIGINAL["SolarizeAdd"](img, add, thresh, **kw)


def posterize(img, bits_to_keep, **kw):
    if bits_to_keep >= 8:
        return img
    if not _bands(img) or bits_to_keep < 0:
        return _ORIGINAL["Posterize"](img, bits_to_keep, **kw)
    if bits_to_keep == 0:  # rsb_tune.data.registry's compatibility rule for Pillow >= 13: a black image
        return img.point([0] * 256 * len(img.getbands()))
    return _apply(img, [_posterize_lut(bits_to_keep)])


# timm op name -> its table-based equivalent (timm's name for each op, all magnitude variants)
FAST_OPS: dict[str, Any] = {
    "AutoContrast": auto_contrast,
    "Equalize": equalize,
    "Invert": invert,
    "Solarize": solarize,
    "SolarizeIncreasing": solarize,
    "SolarizeAdd": solarize_add,
    "Posterize": posterize,
    "PosterizeIncreasing": posterize,
    "PosterizeOriginal": posterize,
}
_ORIGINAL: dict[str, Any] = {}


def _originals() -> None:
    from timm.data import auto_augment as aa

    if not _ORIGINAL:
        _ORIGINAL.update({name: aa.NAME_TO_OP[name] for name in ("AutoContrast", "Equalize", "Invert", "Solarize", "SolarizeAdd", "Posterize")})


class FastRandAugment(RandAugment):
    """timm's RandAugment; the ops drawn with randint, the draw ``choice`` makes."""

    def __call__(self, img):
        if self.choice_weights is not None:
            return super().__call__(img)
        for i in np.random.randint(0, len(self.ops), size=self.num_layers):
            img = self.ops[i](img)
        return img


class FastRandomResizedCrop(RandomResizedCropAndInterpolation):
    """timm's random-resized crop; the crop and resize are Pillow's calls, which torchvision's
    ``resized_crop`` makes for a PIL image, without its checks."""

    def __call__(self, img):
        if not isinstance(img, Image.Image):
            return super().__call__(img)
        i, j, h, w = self.get_params(img, self.scale, self.ratio)
        interpolation = random.choice(self.interpolation) if isinstance(self.interpolation, (tuple, list)) else self.interpolation
        img = img.crop((j, i, j + w, i + h))
        if [h, w] == list(self.size):  # torchvision's resize returns the image as it is
            return img
        return img.resize((self.size[1], self.size[0]), pil_modes_mapping[interpolation])


def _fast_randaugment(ra: RandAugment) -> FastRandAugment:
    out = copy.copy(ra)
    out.__class__ = FastRandAugment
    out.ops = []
    for op in ra.ops:
        op = copy.copy(op)
        if op.name in FAST_OPS:
            op.aug_fn = FAST_OPS[op.name]
        out.ops.append(op)
    return out


def _fast_crop(rrc: RandomResizedCropAndInterpolation) -> FastRandomResizedCrop:
    out = copy.copy(rrc)
    out.__class__ = FastRandomResizedCrop
    return out


_SWAPS = {RandAugment: _fast_randaugment, RandomResizedCropAndInterpolation: _fast_crop}


def fast_pil_ops(transform):
    """A copy of a timm (torchvision ``Compose``) transform with its RandAugment and its
    random-resized crop replaced as described in the module docstring; every other step is the
    same object, and a transform without either comes back as it was."""
    steps = getattr(transform, "transforms", None)
    if not steps or not any(type(t) in _SWAPS for t in steps):
        return transform
    _originals()
    out = copy.copy(transform)
    out.transforms = [_SWAPS[type(t)](t) if type(t) in _SWAPS else t for t in steps]
    return out
