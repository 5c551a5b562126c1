"""timm's training augmentation for a whole batch of decoded uint8 images.

On a 32 px sample the per-sample path (:mod:`rsb_tune.augment.transforms`: timm's PIL transforms, one
image at a time) costs ~200 µs, almost all of it Python and PIL call overhead around ~3,000
pixels. :class:`BatchAugment` makes the same draws and the same pixel arithmetic for a batch
at once:

- the random-resized crop: timm's rejection sampler (10 attempts of scale and log-ratio, then
  the centre-crop fallback) drawn for every sample at once, and Pillow's separable resampling
  (its filter, support and normalisation, the horizontal pass then the vertical one, each
  rounded to 8 bits) as two batched matrix products;
- horizontal / vertical flips with their probabilities;
- RandAugment (``rand-*`` strings without op weights): per sample and layer, the op (uniform
  over the policy's ops, with replacement), whether it applies (its ``prob``), the magnitude
  (Gaussian around ``m`` with ``mstd``, or uniform for ``mstd`` inf, clipped to
  ``[0, magnitude_max or 10]``) and the sign, then timm's level-to-argument rule; each op is
  then applied to the samples that drew it, as one batched op written to Pillow's arithmetic
  (lookup-table ops exactly; blends in float32 with Pillow's truncation; the affine ops
  sample with Pillow's bicubic or bilinear kernel, edge clamping and fill colour);
- ``ToTensor`` + ``Normalize`` at the end (the same float operations as
  :class:`rsb_tune.data.registry.BatchNormalize`).

The draws come from NumPy's global stream (seeded by the trial's ``aug_seed``, saved in its
checkpoints and swapped per seed in a pack), so a run is reproducible and resumable exactly as
the per-sample path is; they are different numbers from the per-sample path's (which draws
from Python's ``random``), from the same distributions. The pixels run where the batch is: on
a CPU in one compiled loop (:mod:`rsb_tune.augment.kernels`, numba), on a GPU as torch ops -
the same images from the same draws. ``tests/test_batch_augment.py`` checks each op of both
against timm's PIL op on the same image and arguments, the two against each other, and every
draw's distribution against timm's over many samples.

:func:`batch_augment_for` returns a :class:`BatchAugment` for a timm train transform made of
these steps only (else it raises :class:`NotBatchable`, and the trial keeps the per-sample
path).

Why a compiled loop on a CPU: as torch ops the batch costs more than PIL's per-sample path
(~180 against ~140-150 µs of CPU per 32 px image, one thread: ~600 small ops per batch whose
dispatch costs as much as PIL's calls, and the affine ops' bicubic is ~15 elementwise passes in
float64); the compiled loop does the same arithmetic per pixel without them
(``benchmarks/data_path.py`` measures all three in one run).
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np
import torch

__all__ = ["BatchAugment", "NotBatchable", "batch_augment_for", "BATCH_OPS", "crop_params", "resample_matrix"]

_LEVEL_DENOM = 10.0


# --------------------------------------------------------------------------- the crop

def crop_params(n: int, height: int, width: int, scale: Sequence[float], ratio: Sequence[float]) -> np.ndarray:
    """(n, 4) int array of (top, left, h, w): timm's ``RandomResizedCropAndInterpolation.get_params``
    for n samples of one size - 10 attempts of (area scale, log aspect ratio), the first that
    fits, else the centre crop clamped to ``ratio`` (all attempts are drawn for every sample)."""
    area = height * width
    target = np.random.uniform(scale[0], scale[1], (n, 10)) * area
    aspect = np.exp(np.random.uniform(math.log(ratio[0]), math.log(ratio[1]), (n, 10)))
    w = np.rint(np.sqrt(target * aspect)).astype(np.int64)
    h = np.rint(np.sqrt(target / aspect)).astype(np.int64)
    fits = (w <= width) & (h <= height)
    first = fits.argmax(axis=1)
    found = fits[np.arange(n), first]
    h, w = h[np.arange(n), first], w[np.arange(n), first]
    u_top, u_left = np.random.random(n), np.random.random(n)
    # the centre crop of timm's fallback
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    h, w = np.where(found, h, fh), np.where(found, w, fw)
    top = np.where(found, np.floor(u_top * (height - h + 1)).astype(np.int64), (height - fh) // 2)
    left = np.where(found, np.floor(u_left * (width - w + 1)).astype(np.int64), (width - fw) // 2)
    return np.stack([top, left, h, w], axis=1)


def _bicubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, ((a + 2.0) * x - (a + 3.0)) * x * x + 1, np.where(x < 2.0, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_RESAMPLE = {"bicubic": (_bicubic, 2.0), "bilinear": (_bilinear, 1.0)}


def resample_matrix(start: np.ndarray, length: np.ndarray, in_size: int, out_size: int, kind: str) -> np.ndarray:
    """(n, out_size, in_size) float64 weights of Pillow's resampling of the span
    ``[start, start + length)`` of an axis of ``in_size`` pixels to ``out_size``: Pillow's
    ``precompute_coeffs`` (filter support widened when downscaling, taps clipped to the span,
    weights normalised) laid out as one matrix per sample."""
    filt, support = _RESAMPLE[kind]
    length = length.astype(np.float64)
    scale = length / out_size  # (n,)
    filterscale = np.maximum(scale, 1.0)
    sup = support * filterscale
    center = (np.arange(out_size)[None, :] + 0.5) * scale[:, None]  # (n, out), in span coordinates
    xmin = np.maximum((center - sup[:, None] + 0.5).astype(np.int64), 0)
    xmax = np.minimum((center + sup[:, None] + 0.5).astype(np.int64), length.astype(np.int64)[:, None])
    k = np.arange(in_size)[None, None, :] - start.astype(np.int64)[:, None, None]  # each pixel in span coordinates
    taps = (k >= xmin[..., None]) & (k < xmax[..., None])
    w = np.where(taps, filt((k - center[..., None] + 0.5) / filterscale[:, None, None]), 0.0)
    total = w.sum(axis=2, keepdims=True)
    return np.where(total != 0, w / np.where(total == 0, 1.0, total), 0.0)


_PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit resampling


def _fixed_point(w: np.ndarray) -> np.ndarray:
    """Pillow's ``normalize_coeffs_8bpc``: each weight as an integer of 22 fractional bits,
    rounded half away from zero."""
    scaled = w * (1 << _PRECISION_BITS)
    return np.where(scaled < 0, np.trunc(scaled - 0.5), np.trunc(scaled + 0.5))


def _pass8(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """One Pillow resampling pass over the last axis of ``x`` (n, rows, in) with fixed-point
    ``weights`` (n, in, out) scaled by 2^-22: (sum + half) >> 22, clipped to 8 bits. In float32
    (twice as fast as float64, in which it would be exact): a sum whose exact value lies within
    ~1e-5 of a rounding boundary can come out one level off (about 1 pixel in 10^5)."""
    return torch.bmm(x, weights).add_(0.5).floor_().clamp_(0, 255)


@functools.lru_cache(maxsize=65536)
def _pass_weights(start: int, length: int, in_size: int, out_size: int, kind: str) -> np.ndarray:
    """(out_size, in_size) float32 fixed-point weights of one span (cached: an axis of n
    pixels has n (n + 1) / 2 spans)."""
    w = resample_matrix(np.array([start]), np.array([length]), in_size, out_size, kind)[0]
    return (_fixed_point(w) / (1 << _PRECISION_BITS)).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _span_taps(in_size: int, out_size: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every span (start, length) of an axis of ``in_size`` pixels resized to ``out_size``:
    (first tap from the span's start, taps, weights (.., 8) int64) indexed [start, length]:
    Pillow's fixed-point weights as the compiled kernel reads them (built once per process)."""
    lo = np.zeros((in_size, in_size + 1, out_size), np.int64)
    cnt = np.zeros_like(lo)
    k = np.zeros((in_size, in_size + 1, out_size, 8), np.int64)
    for start in range(in_size):
        lengths = np.arange(1, in_size - start + 1)
        w = _fixed_point(resample_matrix(np.full(len(lengths), start), lengths, in_size, out_size, kind)).astype(np.int64)
        for length, rows in zip(lengths, w):
            for o, row in enumerate(rows):
                nz = np.flatnonzero(row)
                if len(nz):
                    n = nz[-1] - nz[0] + 1
                    lo[start, length, o], cnt[start, length, o] = nz[0] - start, n
                    k[start, length, o, :n] = row[nz[0] : nz[-1] + 1]
    return lo, cnt, k


def resized_crop(x: torch.Tensor, boxes: np.ndarray, out_h: int, out_w: int, kind: str) -> torch.Tensor:
    """(n, C, H, W) integer-valued float -> (n, C, out_h, out_w): each sample's box cropped and
    resized as Pillow's ``crop`` then ``resize`` (the horizontal pass, stored as 8 bits, then
    the vertical one), in Pillow's fixed-point arithmetic. Exact where no axis is reduced
    (``out >= box``): :func:`batch_augment_for` only uses it there (when a pass reduces, Pillow
    13 may run the vertical pass first)."""
    n, c, height, width = x.shape
    dtype = x.dtype
    top, left, h, w = boxes.T
    wx = torch.from_numpy(np.stack([_pass_weights(int(s), int(l), width, out_w, kind) for s, l in zip(left, w)])).to(x.device)  # (n, out_w, W)
    wy = torch.from_numpy(np.stack([_pass_weights(int(s), int(l), height, out_h, kind) for s, l in zip(top, h)])).to(x.device)  # (n, out_h, H)
    if x.is_cuda:  # exact there at no cost that matters (and immune to TF32 matmul settings)
        x, wx, wy = x.double(), wx.double(), wy.double()
    tmp = _pass8(x.reshape(n, c * height, width), wx.transpose(1, 2))  # (n, C*H, out_w)
    tmp = tmp.view(n, c, height, out_w).permute(0, 1, 3, 2).reshape(n, c * out_w, height)
    out = _pass8(tmp, wy.transpose(1, 2)).view(n, c, out_w, out_h).transpose(2, 3).to(dtype)
    same = (h == out_h) & (w == out_w)
    for i in np.flatnonzero(same):  # torchvision returns a crop of the output size as it is
        t, l = int(top[i]), int(left[i])
        out[i] = x[i, :, t : t + out_h, l : l + out_w].to(dtype)
    return out


# --------------------------------------------------------------------------- the ops
# Each op: f(x (n, C, H, W) integer-valued float32, args (n,) float64 numpy, ctx) -> same shape.


def _per_sample(args: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(args, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)


def _lut(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Apply a (n, C, 256) table per sample and band."""
    n, c = x.shape[:2]
    idx = x.reshape(n, c, -1).long()
    return torch.gather(lut.to(x.dtype), 2, idx).view_as(x)


class _Lut:
    """A RandAugment op that maps each band's values through a table: its table rule
    (images (k, C, H, W), args (k,)) -> (k, C, 256). :meth:`BatchAugment.augment` applies all
    of a layer's table ops with one lookup."""

    def __init__(self, table: Callable[[torch.Tensor, np.ndarray], torch.Tensor]):
        self.table = table

    def __call__(self, x, args, _ctx):
        return _lut(x, self.table(x, args))


def _values(x: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    return torch.arange(256, dtype=dtype, device=x.device).view(1, 1, 256)


def _per_band(args: np.ndarray, x: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    return torch.as_tensor(args, dtype=dtype, device=x.device).view(-1, 1, 1)


def _auto_contrast_table(x, _args):
    """Pillow's ``autocontrast`` (no cutoff): per band, int(v * scale + offset) clipped."""
    flat = x.flatten(2).double()
    lo, hi = flat.amin(2, keepdim=True), flat.amax(2, keepdim=True)
    scale = 255.0 / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    v = _values(x)
    return torch.where(hi > lo, torch.trunc(v * scale + (-lo * scale)).clamp_(0, 255), v)


def _equalize_table(x, _args):
    """Pillow's ``equalize``: per band, (step // 2 + pixels below v) // step."""
    n, c = x.shape[:2]
    idx = x.reshape(n * c, -1).long()
    hist = torch.zeros(n * c, 256, dtype=torch.int64, device=x.device).scatter_add_(1, idx, torch.ones_like(idx))
    top = idx.amax(1, keepdim=True)  # the last non-empty bin
    step = (hist.sum(1, keepdim=True) - hist.gather(1, top)) // 255
    below = torch.cumsum(hist, 1) - hist
    lut = (step // 2 + below) // torch.where(step > 0, step, torch.ones_like(step))
    identity = ((hist > 0).sum(1, keepdim=True) <= 1) | (step == 0)
    return torch.where(identity, torch.arange(256, device=x.device).expand(n * c, 256), lut.clamp_(0, 255)).view(n, c, 256).double()


def _invert_table(x, args):
    return (255.0 - _values(x)).expand(len(args), x.shape[1], 256)


def _posterize_table(x, bits):
    bits = _per_band(bits, x)
    div = torch.pow(2.0, 8.0 - bits.clamp(max=8))
    v = _values(x)
    return torch.where(bits <= 0, torch.zeros_like(v), torch.floor(v / div) * div).expand(-1, x.shape[1], 256)


def _solarize_table(x, thresh):
    v = _values(x)
    return torch.where(v < _per_band(thresh, x), v, 255.0 - v).expand(-1, x.shape[1], 256)


def _solarize_add_table(x, add):
    v = _values(x)
    return torch.where(v < 128, torch.clamp(v + _per_band(add, x), max=255.0), v).expand(-1, x.shape[1], 256)


def _blend_table(degenerate: torch.Tensor, factor: np.ndarray, x: torch.Tensor) -> torch.Tensor:
    """:func:`_blend` of every value 0..255 against a per-sample constant (k, 1, 1)."""
    alpha = _per_band(factor.astype(np.float32), x, torch.float32)
    out = torch.trunc(degenerate + alpha * (_values(x, torch.float32) - degenerate)).clamp_(0, 255)
    return out.expand(-1, x.shape[1], 256).double()


def _contrast_table(x, factor):
    """``ImageEnhance.Contrast``: blend with the mean of the L image, rounded."""
    mean = torch.floor(_luma(x).double().mean(dim=(1, 2, 3)) + 0.5).float().view(-1, 1, 1)
    return _blend_table(mean, factor, x)


def _brightness_table(x, factor):
    """``ImageEnhance.Brightness``: blend with black."""
    return _blend_table(torch.zeros(len(factor), 1, 1, device=x.device), factor, x)


_auto_contrast = _Lut(_auto_contrast_table)
_equalize = _Lut(_equalize_table)
_invert = _Lut(_invert_table)
_posterize = _Lut(_posterize_table)
_solarize = _Lut(_solarize_table)
_solarize_add = _Lut(_solarize_add_table)
_contrast = _Lut(_contrast_table)
_brightness = _Lut(_brightness_table)


def _blend(degenerate: torch.Tensor, img: torch.Tensor, factor: np.ndarray) -> torch.Tensor:
    """Pillow's ``Image.blend(degenerate, img, factor)`` on 8-bit bands: float32, truncated, clipped."""
    alpha = _per_sample(factor.astype(np.float32), img).float()
    out = degenerate + alpha * (img - degenerate)
    return torch.trunc(out).clamp_(0, 255)


def _luma(x: torch.Tensor) -> torch.Tensor:
    """Pillow's RGB -> L (ITU-R 601-2 in 16-bit fixed point), (n, 1, H, W)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.floor((r * 19595 + g * 38470 + b * 7471 + 0x8000) / 65536)


def _color(x, factor, _ctx):
    return _blend(_luma(x).expand_as(x), x, factor)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """Pillow's ``ImageFilter.SMOOTH`` (3x3 of ones with 5 at the centre, scale 13), the border
    rows and columns copied. The 3x3 sum is an exact integer, and sum / 13 is never within
    1/26 of a rounding boundary, so rounding it gives Pillow's float32 result on any device
    (no convolution kernel, whose TF32 or reduced-precision modes would not)."""
    h, w = x.shape[2:]
    total = 4.0 * x[:, :, 1 : h - 1, 1 : w - 1]  # the centre's weight 5, less the 1 counted below
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            total = total + x[:, :, dy : h - 2 + dy, dx : w - 2 + dx]
    out = x.clone()
    out[:, :, 1 : h - 1, 1 : w - 1] = torch.floor(total / 13.0 + 0.5).clamp_(0, 255)
    return out


def _sharpness(x, factor, _ctx):
    return _blend(_smooth(x), x, factor)


def _pil_cubic(v1, v2, v3, v4, d):
    """Pillow's transform bicubic (its BICUBIC macro, the a = -1 cubic, in its Horner order)
    through four taps at -1, 0, 1, 2 at fraction d."""
    p2, p3, p4 = -v1 + v3, 2 * (v1 - v2) + v3 - v4, -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


def _pil_linear(v1, v2, d):
    return v1 + (v2 - v1) * d


def affine(x: torch.Tensor, matrices: np.ndarray, fill: Sequence[float], kind: str) -> torch.Tensor:
    """Pillow's ``Image.transform(size, AFFINE, (a, b, c, d, e, f), resample, fillcolor)`` for
    each sample: output pixel (x, y) samples the input at (a(x+.5) + b(y+.5) + c, d(x+.5) +
    e(y+.5) + f) - outside the image, the fill colour; inside, Pillow's bicubic (or bilinear)
    through edge-clamped taps, each row through the x taps and then the rows through the y
    taps, in float64 - and the value truncated to 8 bits. Matrices that keep rows (shear-x,
    translate-x) or columns in place need one row or column of taps (the others have weight 0)."""
    matrices = np.asarray(matrices, dtype=np.float64)
    keeps_rows = (matrices[:, 3] == 0) & (matrices[:, 4] == 1) & (matrices[:, 5] == 0)
    keeps_cols = (matrices[:, 0] == 1) & (matrices[:, 1] == 0) & (matrices[:, 2] == 0) & ~keeps_rows
    out = torch.empty_like(x)
    for rows, taps in ((keeps_rows, "x"), (keeps_cols, "y"), (~(keeps_rows | keeps_cols), "xy")):
        if rows.any():
            sel = torch.from_numpy(np.flatnonzero(rows)).to(x.device)
            out[sel] = _affine(x[sel], matrices[rows], fill, kind, taps)
    return out


def _affine(x: torch.Tensor, matrices: np.ndarray, fill: Sequence[float], kind: str, taps: str) -> torch.Tensor:
    n, c, h, w = x.shape
    dev = x.device
    m = torch.as_tensor(matrices, dtype=torch.float64, device=dev)[:, :, None]  # (n, 6, 1)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=dev) + 0.5, torch.arange(w, dtype=torch.float64, device=dev) + 0.5, indexing="ij")
    xs, ys = xs.reshape(1, -1), ys.reshape(1, -1)
    xin = m[:, 0] * xs + m[:, 1] * ys + m[:, 2]  # (n, h*w)
    yin = m[:, 3] * xs + m[:, 4] * ys + m[:, 5]
    inside = (xin >= 0) & (xin < w) & (yin >= 0) & (yin < h)
    xf, yf = xin - 0.5, yin - 0.5
    x0, y0 = torch.floor(xf), torch.floor(yf)
    dx, dy = (xf - x0)[:, None], (yf - y0)[:, None]  # (n, 1, h*w)
    offsets, interp = ((-1, 0, 1, 2), _pil_cubic) if kind == "bicubic" else ((0, 1), _pil_linear)
    src = x.double().reshape(n, c * h * w)
    channel = (torch.arange(c, device=dev) * (h * w)).view(1, c, 1)
    x0, y0 = x0.long(), y0.long()
    cols = [(x0 + ox).clamp_(0, w - 1) for ox in (offsets if "x" in taps else (0,))]
    rows = []
    for oy in offsets if "y" in taps else (0,):  # each row through the x taps, then the rows through the y taps
        base = (y0 + oy).clamp_(0, h - 1) * w
        vals = [torch.gather(src, 1, ((base + xi)[:, None] + channel).view(n, -1)).view(n, c, h * w) for xi in cols]
        rows.append(interp(*vals, dx) if len(vals) > 1 else vals[0])
    out = interp(*rows, dy) if len(rows) > 1 else rows[0]
    out = torch.trunc(out).clamp_(0, 255)
    out = torch.where(inside[:, None], out, torch.as_tensor(list(fill)[:c], dtype=torch.float64, device=dev).view(1, c, 1))
    return out.to(x.dtype).view(n, c, h, w)


def _rotate_matrices(degrees: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pillow's ``Image.rotate`` matrix (about the centre, no expand) for each angle."""
    rows = []
    for deg in degrees:
        angle = -math.radians(float(deg) % 360.0)
        a, b, d, e = round(math.cos(angle), 15), round(math.sin(angle), 15), round(-math.sin(angle), 15), round(math.cos(angle), 15)
        cx, cy = w / 2.0, h / 2.0
        rows.append((a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 6)


def _matrix(*entries: str):
    """A matrix rule (args, h, w) -> (n, 6) of (a, b, c, d, e, f) with the op's argument at the
    named entries and the identity elsewhere."""

    def build(args: np.ndarray, _h: int, _w: int) -> np.ndarray:
        m = np.tile(np.array([1.0, 0, 0, 0, 1.0, 0]), (len(args), 1))
        for name in entries:
            m[:, "abcdef".index(name)] = args
        return m

    return build


class _Affine:
    """A geometric RandAugment op: its matrix rule; applying it is :func:`affine`.
    :meth:`BatchAugment.augment` applies all of a layer's affine ops in one call."""

    def __init__(self, matrices: Callable[[np.ndarray, int, int], np.ndarray]):
        self.matrices = matrices

    def __call__(self, x, args, ctx):
        return affine(x, self.matrices(args, x.shape[2], x.shape[3]), ctx["fill"], ctx["resample"])


_rotate = _Affine(_rotate_matrices)
_shear_x = _Affine(_matrix("b"))  # timm: (1, factor, 0, 0, 1, 0)
_shear_y = _Affine(_matrix("d"))  # (1, 0, 0, factor, 1, 0)
_translate_x = _Affine(_matrix("c"))  # (1, 0, pixels, 0, 1, 0)
_translate_y = _Affine(_matrix("f"))  # (1, 0, 0, 0, 1, pixels)


# ------------------------------------------------------------- timm's level -> argument rules
# (level (n,) magnitudes after clipping, sign (n,) of +-1, hparams, image (h, w)) -> args (n,)

def _level_rotate(m, s, _hp, _hw):
    return s * (m / _LEVEL_DENOM) * 30.0


def _level_enhance_increasing(m, s, _hp, _hw):
    return np.maximum(0.1, 1.0 + s * (m / _LEVEL_DENOM) * 0.9)


def _level_enhance(m, _s, _hp, _hw):
    return (m / _LEVEL_DENOM) * 1.8 + 0.1


def _level_shear(m, s, _hp, _hw):
    return s * (m / _LEVEL_DENOM) * 0.3


def _level_translate_rel_x(m, s, hp, hw):
    return s * (m / _LEVEL_DENOM) * hp.get("translate_pct", 0.45) * hw[1]


def _level_translate_rel_y(m, s, hp, hw):
    return s * (m / _LEVEL_DENOM) * hp.get("translate_pct", 0.45) * hw[0]


def _level_translate_abs(m, s, hp, _hw):
    return s * (m / _LEVEL_DENOM) * float(hp["translate_const"])


def _int(v: np.ndarray) -> np.ndarray:
    return np.trunc(v)


def _level_posterize(m, _s, _hp, _hw):
    return _int((m / _LEVEL_DENOM) * 4)


def _level_posterize_increasing(m, s, hp, hw):
    return 4 - _level_posterize(m, s, hp, hw)


def _level_posterize_original(m, s, hp, hw):
    return _level_posterize(m, s, hp, hw) + 4


def _level_solarize(m, _s, _hp, _hw):
    return np.minimum(256, _int((m / _LEVEL_DENOM) * 256))


def _level_solarize_increasing(m, s, hp, hw):
    return 256 - _level_solarize(m, s, hp, hw)


def _level_solarize_add(m, _s, _hp, _hw):
    return np.minimum(128, _int((m / _LEVEL_DENOM) * 110))


def _none(m, _s, _hp, _hw):
    return np.zeros_like(m)


# timm op name -> (batched op, level rule, whether the rule draws a sign)
BATCH_OPS: dict[str, tuple[Callable, Callable, bool]] = {
    "AutoContrast": (_auto_contrast, _none, False),
    "Equalize": (_equalize, _none, False),
    "Invert": (_invert, _none, False),
    "Rotate": (_rotate, _level_rotate, True),
    "Posterize": (_posterize, _level_posterize, False),
    "PosterizeIncreasing": (_posterize, _level_posterize_increasing, False),
    "PosterizeOriginal": (_posterize, _level_posterize_original, False),
    "Solarize": (_solarize, _level_solarize, False),
    "SolarizeIncreasing": (_solarize, _level_solarize_increasing, False),
    "SolarizeAdd": (_solarize_add, _level_solarize_add, False),
    "Color": (_color, _level_enhance, False),
    "ColorIncreasing": (_color, _level_enhance_increasing, True),
    "Contrast": (_contrast, _level_enhance, False),
    "ContrastIncreasing": (_contrast, _level_enhance_increasing, True),
    "Brightness": (_brightness, _level_enhance, False),
    "BrightnessIncreasing": (_brightness, _level_enhance_increasing, True),
    "Sharpness": (_sharpness, _level_enhance, False),
    "SharpnessIncreasing": (_sharpness, _level_enhance_increasing, True),
    "ShearX": (_shear_x, _level_shear, True),
    "ShearY": (_shear_y, _level_shear, True),
    "TranslateX": (_translate_x, _level_translate_abs, True),
    "TranslateY": (_translate_y, _level_translate_abs, True),
    "TranslateXRel": (_translate_x, _level_translate_rel_x, True),
    "TranslateYRel": (_translate_y, _level_translate_rel_y, True),
}


@functools.lru_cache(maxsize=1)
def kernel_codes() -> dict[str, int]:
    """timm op name -> the compiled kernel's op code (imports augment_kernels on first use)."""
    from rsb_tune.augment import kernels as K

    table = {"AutoContrast": K.AUTOCONTRAST, "Equalize": K.EQUALIZE, "Invert": K.INVERT, "Color": K.COLOR, "ColorIncreasing": K.COLOR}
    table.update({n: K.POSTERIZE for n in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal")})
    table.update({n: K.SOLARIZE for n in ("Solarize", "SolarizeIncreasing")})
    table.update({"SolarizeAdd": K.SOLARIZE_ADD, "Contrast": K.CONTRAST, "ContrastIncreasing": K.CONTRAST})
    table.update({"Brightness": K.BRIGHTNESS, "BrightnessIncreasing": K.BRIGHTNESS, "Sharpness": K.SHARPNESS, "SharpnessIncreasing": K.SHARPNESS})
    table.update({n: K.AFFINE for n, (fn, _, _) in BATCH_OPS.items() if isinstance(fn, _Affine)})
    return table


# --------------------------------------------------------------------------- the transform

class _Op:
    """One RandAugment op as timm's ``AugmentOp`` holds it."""

    def __init__(self, op):
        self.name = op.name
        self.fn, self.level, self.signed = BATCH_OPS[op.name]
        self.prob = float(op.prob)
        self.magnitude = float(op.magnitude)
        self.magnitude_std = float(op.magnitude_std)
        self.upper = float(op.magnitude_max or _LEVEL_DENOM)
        self.hparams = dict(op.hparams)
        resample = op.kwargs["resample"]
        self.resample = _interp_name(resample)
        self.fill = tuple(op.kwargs["fillcolor"])

    def __repr__(self) -> str:
        return f"{self.name}(p={self.prob}, m={self.magnitude}, mstd={self.magnitude_std})"


def _interp_name(mode) -> str | None:
    from PIL import Image

    if isinstance(mode, (tuple, list)):
        return None
    name = {Image.Resampling.BICUBIC: "bicubic", Image.Resampling.BILINEAR: "bilinear"}.get(mode)
    if name is None:  # torchvision's InterpolationMode
        value = getattr(mode, "value", mode)
        name = value if value in ("bicubic", "bilinear") else None
    return name


class BatchAugment:
    """timm's train transform (random-resized crop, flips, RandAugment, ToTensor + Normalize)
    for a batch: ``(B, H, W, C)`` uint8 -> ``(B, C, h, w)`` normalised float, on the batch's
    device; the draws from NumPy's global stream (see the module docstring)."""

    def __init__(self, size, scale, ratio, interpolation: str, hflip: float, vflip: float, ops: Sequence[_Op], num_layers: int, mean, std):
        self.size = tuple(size)
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.interpolation = interpolation
        self.hflip, self.vflip = float(hflip), float(vflip)
        self.ops = list(ops)
        self.num_layers = int(num_layers)
        self.mean, self.std = mean, std
        # the compiled CPU kernel takes one fill colour and resampling for the policy's affine ops
        geometric = {(op.fill, op.resample) for op in self.ops if isinstance(op.fn, _Affine)} or {((128, 128, 128), "bicubic")}
        self.compiled = len(geometric) == 1 and all(op.name in kernel_codes() for op in self.ops)
        (self._fill, self._resample), = list(geometric)[:1]
        self._table: tuple | None = None  # (dtype, the normalising table): see _normalize_table

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio={self.ratio}, interpolation={self.interpolation}, "
            f"hflip={self.hflip}, vflip={self.vflip}, n={self.num_layers}, ops={self.ops})"
        )

    def draw_ops(self, n: int) -> dict[str, np.ndarray]:
        """Per sample and layer: op index, applied, magnitude (clipped) and sign."""
        shape = (n, self.num_layers)
        index = np.random.randint(0, len(self.ops), size=shape)
        applied = np.random.random(shape) <= np.array([op.prob for op in self.ops])[index]
        mean = np.array([op.magnitude for op in self.ops])[index]
        std = np.array([op.magnitude_std for op in self.ops])[index]
        gauss = np.random.normal(0.0, 1.0, shape)
        uniform = np.random.random(shape)
        magnitude = np.where(np.isinf(std), uniform * mean, np.where(std > 0, mean + np.where(np.isinf(std), 0, std) * gauss, mean))
        magnitude = np.clip(magnitude, 0.0, np.array([op.upper for op in self.ops])[index])
        sign = np.where(np.random.random(shape) > 0.5, -1.0, 1.0)
        return {"index": index, "applied": applied, "magnitude": magnitude, "sign": sign}

    def draw(self, n: int, height: int, width: int) -> dict[str, np.ndarray]:
        """Every random draw of a batch of n images of (height, width), from NumPy's global
        stream, in a fixed order: crop boxes, flips, RandAugment's ops."""
        draws = {"boxes": crop_params(n, height, width, self.scale, self.ratio)}
        for name, p in (("hflip", self.hflip), ("vflip", self.vflip)):
            draws[name] = np.random.random(n) < p if p > 0 else np.zeros(n, bool)
        if self.num_layers and self.ops:
            draws.update(self.draw_ops(n))
        return draws

    def _layer(self, draws: dict[str, np.ndarray], layer: int):
        """(op, rows, args) of each op that some sample of the batch applies in ``layer``."""
        hw = (self.size[0], self.size[1])
        rows = np.flatnonzero(draws["applied"][:, layer])
        ops = draws["index"][rows, layer]
        order = np.argsort(ops, kind="stable")  # by op, each op's rows in order
        rows, ops = rows[order], ops[order]
        starts = np.flatnonzero(np.diff(ops, prepend=-1))
        for start, end in zip(starts, [*starts[1:], len(rows)]):
            op, sel = self.ops[ops[start]], rows[start:end]
            yield op, sel, op.level(draws["magnitude"][sel, layer], draws["sign"][sel, layer], op.hparams, hw)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) uint8 -> (B, C, h, w) integer-valued float32: the augmented images (torch
        ops on the batch's device)."""
        n, height, width, _ = x.shape
        draws = self.draw(n, height, width)
        img = resized_crop(x.permute(0, 3, 1, 2).float(), draws["boxes"], self.size[0], self.size[1], self.interpolation)
        for name, dim in (("hflip", 3), ("vflip", 2)):
            if draws[name].any():
                flip = torch.from_numpy(draws[name]).to(img.device)
                img = torch.where(flip.view(-1, 1, 1, 1), img.flip(dim), img)
        for layer in range(self.num_layers if self.ops else 0):
            geometric: dict[tuple, list] = {}  # (fill, resample) -> [(rows, matrices)]
            tables: list = []  # [(rows, (k, C, 256) tables)]
            for op, rows, args in self._layer(draws, layer):
                if isinstance(op.fn, _Affine):
                    geometric.setdefault((op.fill, op.resample), []).append((rows, op.fn.matrices(args, *self.size)))
                    continue
                sel = torch.from_numpy(rows).to(img.device)
                if isinstance(op.fn, _Lut):
                    tables.append((sel, op.fn.table(img[sel], args)))
                else:
                    img[sel] = op.fn(img[sel], args, {"fill": op.fill, "resample": op.resample})
            if tables:
                sel = torch.cat([r for r, _ in tables])
                img[sel] = _lut(img[sel], torch.cat([t for _, t in tables]))
            for (fill, resample), parts in geometric.items():  # a sample draws one op per layer
                rows = np.concatenate([r for r, _ in parts])
                sel = torch.from_numpy(rows).to(img.device)
                img[sel] = affine(img[sel], np.concatenate([m for _, m in parts]), fill, resample)
        return img

    def augment_compiled(self, images: np.ndarray, index: np.ndarray) -> np.ndarray:
        """The same images as :meth:`augment` of ``images[index]`` from the same draws, by the
        compiled CPU kernel (:mod:`rsb_tune.augment.kernels`): (B, h, w, C) uint8."""
        from rsb_tune.augment import kernels as K

        n = len(index)
        height, width = images.shape[1:3]
        oh, ow = self.size
        draws = self.draw(n, height, width)
        boxes = draws["boxes"]
        xt = [table[boxes[:, 1], boxes[:, 3]] for table in _span_taps(width, ow, self.interpolation)]
        yt = [table[boxes[:, 0], boxes[:, 2]] for table in _span_taps(height, oh, self.interpolation)]
        layers = self.num_layers if self.ops else 0
        codes = np.full((n, layers), K.NONE, np.int64)
        args = np.zeros((n, layers, 6))
        for layer in range(layers):
            for op, rows, a in self._layer(draws, layer):
                codes[rows, layer] = kernel_codes()[op.name]
                args[rows, layer] = op.fn.matrices(a, *self.size) if isinstance(op.fn, _Affine) else a[:, None]
        out = np.empty((n, oh, ow, 3), np.uint8)
        fill = np.array(self._fill, np.int64)
        K.augment_batch(
            images, np.asarray(index, np.int64), boxes.astype(np.int64),
            *xt, *yt,
            draws["hflip"], draws["vflip"], codes, args, fill, self._resample == "bicubic", out,
        )  # fmt: skip
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) uint8 -> normalised (B, C, h, w): on a CPU by the compiled kernel, on
        other devices by torch ops (the same images from the same draws)."""
        from rsb_tune.data.registry import BatchNormalize

        if x.device.type == "cpu" and self.compiled:
            from rsb_tune.augment.kernels import normalize

            hwc = self.augment_compiled(x.numpy(), np.arange(len(x)))
            out = np.empty(hwc.shape, torch.empty((), dtype=torch.get_default_dtype()).numpy().dtype)
            normalize(hwc, self._normalize_table(), out)
            return torch.from_numpy(out).permute(0, 3, 1, 2)  # channels-last, as BatchNormalize's
        hwc = self.augment(x).permute(0, 2, 3, 1).contiguous()
        # the per-sample path's tail: channels-last batches, the same float operations
        return BatchNormalize(self.mean, self.std)(hwc)

    def _normalize_table(self) -> np.ndarray:
        """(3, 256): BatchNormalize of every uint8 value in each band (the same float operations
        as on a batch: one pass of table lookups replaces four passes over it)."""
        from rsb_tune.data.registry import BatchNormalize

        dtype = torch.get_default_dtype()
        if self._table is None or self._table[0] != dtype:
            values = torch.arange(256, dtype=torch.uint8).view(1, 1, 256, 1).expand(1, 1, 256, 3).contiguous()
            self._table = (dtype, BatchNormalize(self.mean, self.std)(values)[0, :, 0, :].contiguous().numpy())
        return self._table[1]


class NotBatchable(ValueError):
    """The transform or the images have no batched form here; the message says which step."""


def batch_augment_for(transform, image_size: Sequence[int]) -> BatchAugment:
    """The :class:`BatchAugment` equal in distribution to a timm train transform applied to
    images of ``image_size`` (h, w). Raises :class:`NotBatchable` naming the step when the
    transform holds one without a batched form here (colour jitter, random erasing,
    AutoAugment/AugMix policies, weighted RandAugment, an op not in :data:`BATCH_OPS`, nearest
    or random interpolation) or when the images are larger than the crop's output (Pillow's
    reducing resize is not reproduced)."""
    from timm.data.auto_augment import RandAugment
    from timm.data.transforms import MaybeToTensor, RandomResizedCropAndInterpolation
    from torchvision import transforms as T

    steps = list(getattr(transform, "transforms", None) or [])
    if len(steps) < 3 or type(steps[0]) is not RandomResizedCropAndInterpolation:
        raise NotBatchable("the transform does not start with timm's random-resized crop")
    if type(steps[-2]) not in (T.ToTensor, MaybeToTensor) or type(steps[-1]) is not T.Normalize:
        raise NotBatchable(f"the transform does not end with ToTensor, Normalize (it ends with {type(steps[-1]).__name__}: random erasing?)")
    crop = steps[0]
    interpolation = _interp_name(crop.interpolation)
    if interpolation is None:
        raise NotBatchable(f"crop interpolation {crop.interpolation} (batched: bicubic, bilinear)")
    if image_size[0] > crop.size[0] or image_size[1] > crop.size[1]:
        raise NotBatchable(f"images of {image_size[0]}x{image_size[1]} are larger than the crop's {crop.size[0]}x{crop.size[1]} (a reducing resize)")
    hflip = vflip = 0.0
    ops: list[_Op] = []
    num_layers = 0
    for step in steps[1:-2]:
        if type(step) is T.RandomHorizontalFlip:
            hflip = step.p
        elif type(step) is T.RandomVerticalFlip:
            vflip = step.p
        elif type(step) is RandAugment:
            missing = [op.name for op in step.ops if op.name not in BATCH_OPS]
            if step.choice_weights is not None or missing:
                raise NotBatchable(f"RandAugment with op weights or ops {missing} (batched: {', '.join(BATCH_OPS)})")
            if any(_interp_name(op.kwargs["resample"]) is None for op in step.ops):
                raise NotBatchable("RandAugment with random interpolation")
            ops, num_layers = [_Op(op) for op in step.ops], step.num_layers
        else:
            raise NotBatchable(f"step {type(step).__name__} (colour jitter, AutoAugment and AugMix have no batched form)")
    norm = steps[-1]
    return BatchAugment(crop.size, crop.scale, crop.ratio, interpolation, hflip, vflip, ops, num_layers, norm.mean, norm.std)
