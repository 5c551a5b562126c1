"""The batched augmentation's pixels on a CPU, one compiled loop per batch (numba).

:mod:`rsb_tune.batch_augment` draws a batch's crops, flips and RandAugment ops in NumPy and
applies them either as torch ops (on a GPU) or here: :func:`augment_batch` walks the batch
sample by sample in compiled code with Pillow's arithmetic - the fixed-point separable resize
of the crop, the lookup tables, the float32 blends with truncation, the transform bicubic or
bilinear in double with edge-clamped taps and fill - so it gives the same pixels as the torch
ops (``tests/test_batch_augment.py`` checks both against timm's PIL ops and each other) at a
fraction of the cost: torch eager spends more on dispatching ~600 small ops per batch than
PIL spends per sample.

Per sample and RandAugment layer the op is a code (below; ``NONE`` when the op does not
apply) with up to six float arguments: the affine matrix, or the op's one argument first.
Compiled on first use in a process (cached on disk by numba).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# op codes (batch_augment maps timm's op names to these)
NONE, AUTOCONTRAST, EQUALIZE, INVERT, POSTERIZE, SOLARIZE, SOLARIZE_ADD, COLOR, CONTRAST, BRIGHTNESS, SHARPNESS, AFFINE = range(-1, 11)

_HALF = 1 << 21  # Pillow's PRECISION_BITS = 22
_SHIFT = 22


@njit(cache=True)
def _clip8(v):
    return 0 if v < 0 else (255 if v > 255 else v)


@njit(cache=True)
def _resample_rows(src, top, left, h, w, lo, cnt, k, out):
    """Horizontal pass: rows top..top+h of the crop, columns through (lo, cnt, k)."""
    ow = lo.shape[0]
    for y in range(h):
        for x in range(ow):
            for c in range(3):
                ss = _HALF
                for i in range(cnt[x]):
                    ss += np.int64(src[top + y, left + lo[x] + i, c]) * k[x, i]
                out[y, x, c] = _clip8(ss >> _SHIFT)


@njit(cache=True)
def _resample_cols(src, lo, cnt, k, out):
    """Vertical pass over an (h, ow, 3) buffer into (oh, ow, 3)."""
    oh = lo.shape[0]
    for y in range(oh):
        for x in range(src.shape[1]):
            for c in range(3):
                ss = _HALF
                for i in range(cnt[y]):
                    ss += np.int64(src[lo[y] + i, x, c]) * k[y, i]
                out[y, x, c] = _clip8(ss >> _SHIFT)


@njit(cache=True)
def _blend(deg, v, f):
    """Pillow's Image.blend of one 8-bit value: float32, clipped, truncated."""
    t = np.float32(deg) + f * (np.float32(v) - np.float32(deg))
    if t <= 0:
        return 0
    if t >= 255:
        return 255
    return int(t)


@njit(cache=True)
def _luma(r, g, b):
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


@njit(cache=True)
def _apply_lut(img, lut):
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            for c in range(3):
                img[y, x, c] = lut[c, img[y, x, c]]


@njit(cache=True)
def _table_op(img, code, arg):
    lut = np.empty((3, 256), np.int64)
    n = img.shape[0] * img.shape[1]
    if code == AUTOCONTRAST:
        for c in range(3):
            lo, hi = 255, 0
            for y in range(img.shape[0]):
                for x in range(img.shape[1]):
                    v = img[y, x, c]
                    lo = min(lo, v)
                    hi = max(hi, v)
            if hi <= lo:
                for v in range(256):
                    lut[c, v] = v
            else:
                scale = 255.0 / (hi - lo)
                offset = -lo * scale
                for v in range(256):
                    lut[c, v] = _clip8(int(v * scale + offset))
    elif code == EQUALIZE:
        for c in range(3):
            hist = np.zeros(256, np.int64)
            for y in range(img.shape[0]):
                for x in range(img.shape[1]):
                    hist[img[y, x, c]] += 1
            nonzero, top = 0, 0
            for v in range(256):
                if hist[v]:
                    nonzero += 1
                    top = v
            step = (n - hist[top]) // 255
            if nonzero <= 1 or step == 0:
                for v in range(256):
                    lut[c, v] = v
            else:
                acc = step // 2
                for v in range(256):
                    lut[c, v] = min(acc // step, 255)
                    acc += hist[v]
    elif code == CONTRAST or code == BRIGHTNESS:
        mean = 0
        if code == CONTRAST:
            total = 0
            for y in range(img.shape[0]):
                for x in range(img.shape[1]):
                    total += _luma(np.int64(img[y, x, 0]), np.int64(img[y, x, 1]), np.int64(img[y, x, 2]))
            mean = int(total / n + 0.5)
        f = np.float32(arg)
        for v in range(256):
            lut[0, v] = _blend(mean, v, f)
        for c in range(1, 3):
            lut[c] = lut[0]
    else:
        for v in range(256):
            if code == INVERT:
                out = 255 - v
            elif code == POSTERIZE:
                bits = int(arg)
                out = 0 if bits <= 0 else (v if bits >= 8 else v & ~((1 << (8 - bits)) - 1))
            elif code == SOLARIZE:
                out = v if v < arg else 255 - v
            else:  # SOLARIZE_ADD, threshold 128
                out = min(255, v + int(arg)) if v < 128 else v
            lut[0, v] = out
        for c in range(1, 3):
            lut[c] = lut[0]
    _apply_lut(img, lut)


@njit(cache=True)
def _color(img, arg):
    f = np.float32(arg)
    for y in range(img.shape[0]):
        for x in range(img.shape[1]):
            g = _luma(np.int64(img[y, x, 0]), np.int64(img[y, x, 1]), np.int64(img[y, x, 2]))
            for c in range(3):
                img[y, x, c] = _blend(g, img[y, x, c], f)


@njit(cache=True)
def _sharpness(img, arg, tmp):
    """Blend with Pillow's SMOOTH (ones, centre 5, /13; borders copied), the 3x3 sums exact."""
    h, w = img.shape[0], img.shape[1]
    tmp[:h, :w] = img
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            for c in range(3):
                s = 4 * np.int64(img[y, x, c])
                for dy in range(-1, 2):
                    for dx in range(-1, 2):
                        s += img[y + dy, x + dx, c]
                tmp[y, x, c] = _clip8(int(np.floor(np.float32(s) / np.float32(13.0) + np.float32(0.5))))
    f = np.float32(arg)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                img[y, x, c] = _blend(tmp[y, x, c], img[y, x, c], f)


@njit(cache=True, inline="always")
def _cubic(v1, v2, v3, v4, d):
    p2 = -v1 + v3
    p3 = 2 * (v1 - v2) + v3 - v4
    p4 = -v1 + v2 - v3 + v4
    return v2 + d * (p2 + d * (p3 + d * p4))


@njit(cache=True)
def _affine(img, m, fill, bicubic, tmp):
    """Pillow's transform(AFFINE) of img (in place, through tmp)."""
    h, w = img.shape[0], img.shape[1]
    for y in range(h):
        for x in range(w):
            xin = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2]
            yin = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5]
            if xin < 0.0 or xin >= w or yin < 0.0 or yin >= h:
                for c in range(3):
                    tmp[y, x, c] = fill[c]
                continue
            xf, yf = xin - 0.5, yin - 0.5
            x0, y0 = int(np.floor(xf)), int(np.floor(yf))
            dx, dy = xf - x0, yf - y0
            if bicubic:
                xa, xb, xc, xd = min(max(x0 - 1, 0), w - 1), min(max(x0, 0), w - 1), min(max(x0 + 1, 0), w - 1), min(max(x0 + 2, 0), w - 1)
                ya, yb, yc, yd = min(max(y0 - 1, 0), h - 1), min(max(y0, 0), h - 1), min(max(y0 + 1, 0), h - 1), min(max(y0 + 2, 0), h - 1)
                for c in range(3):
                    r0 = _cubic(float(img[ya, xa, c]), float(img[ya, xb, c]), float(img[ya, xc, c]), float(img[ya, xd, c]), dx)
                    r1 = _cubic(float(img[yb, xa, c]), float(img[yb, xb, c]), float(img[yb, xc, c]), float(img[yb, xd, c]), dx)
                    r2 = _cubic(float(img[yc, xa, c]), float(img[yc, xb, c]), float(img[yc, xc, c]), float(img[yc, xd, c]), dx)
                    r3 = _cubic(float(img[yd, xa, c]), float(img[yd, xb, c]), float(img[yd, xc, c]), float(img[yd, xd, c]), dx)
                    v = _cubic(r0, r1, r2, r3, dy)
                    tmp[y, x, c] = 0 if v <= 0.0 else (255 if v >= 255.0 else int(v))
            else:
                ya, yb = min(max(y0, 0), h - 1), min(max(y0 + 1, 0), h - 1)
                xa, xb = min(max(x0, 0), w - 1), min(max(x0 + 1, 0), w - 1)
                for c in range(3):
                    r1 = img[ya, xa, c] + (float(img[ya, xb, c]) - img[ya, xa, c]) * dx
                    r2 = img[yb, xa, c] + (float(img[yb, xb, c]) - img[yb, xa, c]) * dx
                    v = r1 + (r2 - r1) * dy
                    tmp[y, x, c] = 0 if v <= 0.0 else (255 if v >= 255.0 else int(v))
    img[:] = tmp[:h, :w]


@njit(cache=True)
def apply_op(img, code, args, fill, bicubic, tmp):
    """One RandAugment op on one (H, W, 3) uint8 image, in place."""
    if code == NONE:
        return
    if code == AFFINE:
        _affine(img, args, fill, bicubic, tmp)
    elif code == COLOR:
        _color(img, args[0])
    elif code == SHARPNESS:
        _sharpness(img, args[0], tmp)
    else:
        _table_op(img, code, args[0])


@njit(cache=True)
def augment_batch(images, index, boxes, xlo, xcnt, xk, ylo, ycnt, yk, hflip, vflip, codes, args, fill, bicubic, out):
    """out[i] = the augmented images[index[i]]: its crop boxes[i] (top, left, h, w) resized
    through the per-sample fixed-point taps (xlo, xcnt, xk) then (ylo, ycnt, yk) (or copied when
    the box is the output's size), flipped where hflip / vflip, then each layer's op
    codes[i, l] with args[i, l]."""
    n, oh, ow = out.shape[0], out.shape[1], out.shape[2]
    hmax = images.shape[1]
    rows = np.empty((hmax, ow, 3), np.uint8)
    tmp = np.empty((oh, ow, 3), np.uint8)
    for i in range(n):
        src = images[index[i]]
        top, left, h, w = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        img = out[i]
        if h == oh and w == ow:
            img[:] = src[top : top + h, left : left + w]
        else:
            _resample_rows(src, top, left, h, w, xlo[i], xcnt[i], xk[i], rows)
            _resample_cols(rows[:h], ylo[i], ycnt[i], yk[i], img)
        if hflip[i]:
            tmp[:] = img[:, ::-1]
            img[:] = tmp
        if vflip[i]:
            tmp[:] = img[::-1]
            img[:] = tmp
        for layer in range(codes.shape[1]):
            apply_op(img, codes[i, layer], args[i, layer], fill, bicubic, tmp)
