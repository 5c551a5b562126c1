"""The batched augmentation's pixels on a CPU, one compiled loop per batch (numba).

:mod:`rsb_tune.augment.batched` draws a batch's crops, flips and RandAugment ops in NumPy and
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
from rsb_tune._jit import njit

# op codes (batch_augment maps timm's op names to these)
NONE, AUTOCONTRAST, EQUALIZE, INVERT, POSTERIZE, SOLARIZE, SOLARIZE_ADD, COLOR, CONTRAST, BRIGHTNESS, SHARPNESS, AFFINE = range(-1, 11)

_HALF = 1 << 21  # Pillow's PRECISION_BITS = 22
_SHIFT = 22


@njit(cache=True)
def _clip8(v):
    return 0 if v < 0 else (255 if v > 255 else v)


@njit(cache=True)
def _pad_taps(lo, cnt, k, start, idx, wt):
    """Give every output of a pass the same number of taps - the most any output has, rounded
    up to a multiple of 4 - and return it: idx the input positions start + lo + i, wt the
    weights; past an output's own taps, its last position again with weight 0, which adds
    exactly 0 to the integer sum. A common count, in fours, spares the tap loops a branch per
    output and lets them unroll."""
    taps = 1
    for o in range(lo.shape[0]):
        taps = max(taps, cnt[o])
    taps = (taps + 3) // 4 * 4
    for o in range(lo.shape[0]):
        last = max(cnt[o] - 1, 0)
        for i in range(taps):
            idx[o, i] = start + lo[o] + min(i, last)
            wt[o, i] = k[o, i] if i < cnt[o] else 0
    return taps


@njit(cache=True, inline="always")
def _four_taps(row, idx, wt, o, i, c):
    """Band c's sum over the taps i..i+3 of output o, from a row (W, 3)."""
    return (
        np.int64(row[idx[o, i], c]) * wt[o, i] + np.int64(row[idx[o, i + 1], c]) * wt[o, i + 1]
        + np.int64(row[idx[o, i + 2], c]) * wt[o, i + 2] + np.int64(row[idx[o, i + 3], c]) * wt[o, i + 3]
    )  # fmt: skip


@njit(cache=True)
def _resample_rows(src, top, h, idx, wt, taps, out):
    """Horizontal pass: rows top..top+h of src (H, W, 3) through the padded taps into out
    (rows, ow * 3), column by column so that the first four taps' positions and weights stay
    in registers down the column (the sums are exact integers, so their order is free)."""
    for x in range(idx.shape[0]):
        j0, j1, j2, j3 = idx[x, 0], idx[x, 1], idx[x, 2], idx[x, 3]
        k0, k1, k2, k3 = wt[x, 0], wt[x, 1], wt[x, 2], wt[x, 3]
        for y in range(h):
            row = src[top + y]
            for c in range(3):
                s = _HALF + np.int64(row[j0, c]) * k0 + np.int64(row[j1, c]) * k1 + np.int64(row[j2, c]) * k2 + np.int64(row[j3, c]) * k3
                for i in range(4, taps, 4):
                    s += _four_taps(row, idx, wt, x, i, c)
                out[y, 3 * x + c] = _clip8(s >> _SHIFT)


@njit(cache=True)
def _resample_cols(src, idx, wt, taps, acc, out):
    """Vertical pass over the (h, ow * 3) rows into (oh, ow * 3): each output row a sum of
    whole input rows, four at a time, in loops along the row that vectorise - straight into
    out when there are four taps (any enlarging pass), else summed in acc (exact integer
    sums, in any order)."""
    n = out.shape[1]
    for y in range(idx.shape[0]):
        for i in range(0, taps, 4):
            r0, r1, r2, r3 = src[idx[y, i]], src[idx[y, i + 1]], src[idx[y, i + 2]], src[idx[y, i + 3]]
            k0, k1, k2, k3 = wt[y, i], wt[y, i + 1], wt[y, i + 2], wt[y, i + 3]
            if taps == 4:
                for j in range(n):
                    out[y, j] = _clip8((_HALF + np.int64(r0[j]) * k0 + np.int64(r1[j]) * k1 + np.int64(r2[j]) * k2 + np.int64(r3[j]) * k3) >> _SHIFT)
            else:
                for j in range(n):
                    acc[j] = (_HALF if i == 0 else acc[j]) + np.int64(r0[j]) * k0 + np.int64(r1[j]) * k1 + np.int64(r2[j]) * k2 + np.int64(r3[j]) * k3
        if taps > 4:
            for j in range(n):
                out[y, j] = _clip8(acc[j] >> _SHIFT)


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
    for y in range(h):  # (a loop: numba's array assignment costs more than the copy)
        for x in range(w):
            for c in range(3):
                tmp[y, x, c] = img[y, x, c]
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


@njit(cache=True, inline="always")
def _trunc8(v):
    """Pillow's float -> 8 bits of the transform: clipped, truncated."""
    return 0 if v <= 0.0 else (255 if v >= 255.0 else int(v))


@njit(cache=True)
def _coords(m, y, h, w, inside, x0, y0, dx, dy):
    """Row y's source points, as Pillow computes them, for the whole row in one loop (which
    vectorises): (xin, yin) = (a(x + .5) + b(y + .5) + c, d(x + .5) + e(y + .5) + f), whether
    it lies inside the image, the taps' origin floor(xin - .5) (0 outside) and the fractions
    xin - .5 - floor(xin - .5) (Pillow subtracts the floor as an int: the same value inside).
    Returns whether some inside pixel has dx != 0.0, and whether one has dy != 0.0."""
    bx, by = m[1] * (y + 0.5), m[4] * (y + 0.5)  # the same products as per pixel
    nx = ny = 0
    for x in range(w):
        xin = m[0] * (x + 0.5) + bx + m[2]
        yin = m[3] * (x + 0.5) + by + m[5]
        ins = not (xin < 0.0 or xin >= w or yin < 0.0 or yin >= h)
        xf, yf = xin - 0.5, yin - 0.5
        fx, fy = np.floor(xf), np.floor(yf)
        fdx, fdy = xf - fx, yf - fy
        inside[x] = ins
        x0[x] = int(fx) if ins else 0  # outside, floor may be beyond an int's range
        y0[x] = int(fy) if ins else 0
        dx[x], dy[x] = fdx, fdy
        nx += ins & (fdx != 0.0)  # & rather than `and`: no branch, the loop vectorises
        ny += ins & (fdy != 0.0)
    return nx > 0, ny > 0


@njit(cache=True)
def _affine(img, m, fill, bicubic):
    """Pillow's transform(AFFINE) of img, in place, reading a float64 copy (the values Pillow
    interpolates). Row by row: the source points (:func:`_coords`), then per pixel the fill
    or the interpolation. Bicubic skips the cubic along y where dy == 0.0 at every inside pixel
    of the row, and along x where dx == 0.0 (every row of a shear or translation along one
    axis): ``_cubic(v1, v2, v3, v4, 0.0)`` is v2 + 0.0 * (a finite value), which is v2 up to
    the sign of a zero, and the truncation ignores that sign; a cubic along x at dx == 0.0 is
    its v2 exactly (v2 >= 0), so the cubic along y sees the same values."""
    h, w = img.shape[0], img.shape[1]
    src = np.empty((h, w, 3))
    for y in range(h):
        for x in range(w):
            for c in range(3):
                src[y, x, c] = img[y, x, c]
    inside = np.empty(w, np.bool_)
    x0s, y0s = np.empty(w, np.int64), np.empty(w, np.int64)
    dxs, dys = np.empty(w), np.empty(w)
    for y in range(h):
        moves_x, moves_y = _coords(m, y, h, w, inside, x0s, y0s, dxs, dys)
        for x in range(w):
            if not inside[x]:
                for c in range(3):
                    img[y, x, c] = fill[c]
                continue
            x0, y0, dx, dy = x0s[x], y0s[x], dxs[x], dys[x]
            if bicubic:
                xa, xb, xc, xd = min(max(x0 - 1, 0), w - 1), min(max(x0, 0), w - 1), min(max(x0 + 1, 0), w - 1), min(max(x0 + 2, 0), w - 1)
                ya, yb, yc, yd = min(max(y0 - 1, 0), h - 1), min(max(y0, 0), h - 1), min(max(y0 + 1, 0), h - 1), min(max(y0 + 2, 0), h - 1)
                if not moves_y:
                    for c in range(3):
                        img[y, x, c] = _trunc8(_cubic(src[yb, xa, c], src[yb, xb, c], src[yb, xc, c], src[yb, xd, c], dx))
                elif not moves_x:
                    for c in range(3):
                        img[y, x, c] = _trunc8(_cubic(src[ya, xb, c], src[yb, xb, c], src[yc, xb, c], src[yd, xb, c], dy))
                else:
                    for c in range(3):
                        r0 = _cubic(src[ya, xa, c], src[ya, xb, c], src[ya, xc, c], src[ya, xd, c], dx)
                        r1 = _cubic(src[yb, xa, c], src[yb, xb, c], src[yb, xc, c], src[yb, xd, c], dx)
                        r2 = _cubic(src[yc, xa, c], src[yc, xb, c], src[yc, xc, c], src[yc, xd, c], dx)
                        r3 = _cubic(src[yd, xa, c], src[yd, xb, c], src[yd, xc, c], src[yd, xd, c], dx)
                        img[y, x, c] = _trunc8(_cubic(r0, r1, r2, r3, dy))
            else:
                ya, yb = min(max(y0, 0), h - 1), min(max(y0 + 1, 0), h - 1)
                xa, xb = min(max(x0, 0), w - 1), min(max(x0 + 1, 0), w - 1)
                for c in range(3):
                    r1 = src[ya, xa, c] + (src[ya, xb, c] - src[ya, xa, c]) * dx
                    r2 = src[yb, xa, c] + (src[yb, xb, c] - src[yb, xa, c]) * dx
                    img[y, x, c] = _trunc8(r1 + (r2 - r1) * dy)


@njit(cache=True)
def apply_op(img, code, args, fill, bicubic, tmp):
    """One RandAugment op on one (H, W, 3) uint8 image, in place."""
    if code == NONE:
        return
    if code == AFFINE:
        _affine(img, args, fill, bicubic)
    elif code == COLOR:
        _color(img, args[0])
    elif code == SHARPNESS:
        _sharpness(img, args[0], tmp)
    else:
        _table_op(img, code, args[0])


@njit(cache=True)
def _flip(img, horizontal):
    """Mirror img left-right (horizontal) or top-bottom, in place, by swapping pixels."""
    h, w = img.shape[0], img.shape[1]
    for y in range(h if horizontal else h // 2):
        for x in range(w // 2 if horizontal else w):
            y2, x2 = (y, w - 1 - x) if horizontal else (h - 1 - y, x)
            for c in range(3):
                img[y, x, c], img[y2, x2, c] = img[y2, x2, c], img[y, x, c]


@njit(cache=True)
def augment_batch(images, index, boxes, xlo, xcnt, xk, ylo, ycnt, yk, hflip, vflip, codes, args, fill, bicubic, out):
    """out[i] = the augmented images[index[i]]: its crop boxes[i] (top, left, h, w) resized
    through the per-sample fixed-point taps (xlo, xcnt, xk) then (ylo, ycnt, yk) (or copied when
    the box is the output's size), flipped where hflip / vflip, then each layer's op
    codes[i, l] with args[i, l]. out is C-contiguous (the vertical pass writes its rows as
    ow * 3 values)."""
    n, oh, ow = out.shape[0], out.shape[1], out.shape[2]
    flat = out.reshape(n, oh, ow * 3)
    rows = np.empty((images.shape[1], ow * 3), np.uint8)
    acc = np.empty(ow * 3, np.int64)
    slots = (max(xk.shape[2], yk.shape[2]) + 3) // 4 * 4
    xidx, xwt = np.empty((ow, slots), np.int64), np.empty((ow, slots), np.int64)
    yidx, ywt = np.empty((oh, slots), np.int64), np.empty((oh, slots), np.int64)
    tmp = np.empty((oh, ow, 3), np.uint8)
    for i in range(n):
        src = images[index[i]]
        top, left, h, w = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        img = out[i]
        if h == oh and w == ow:
            for y in range(oh):
                for x in range(ow):
                    for c in range(3):
                        img[y, x, c] = src[top + y, left + x, c]
        else:
            taps = _pad_taps(xlo[i], xcnt[i], xk[i], left, xidx, xwt)
            _resample_rows(src, top, h, xidx, xwt, taps, rows)
            taps = _pad_taps(ylo[i], ycnt[i], yk[i], 0, yidx, ywt)
            _resample_cols(rows, yidx, ywt, taps, acc, flat[i])
        if hflip[i]:
            _flip(img, True)
        if vflip[i]:
            _flip(img, False)
        for layer in range(codes.shape[1]):
            apply_op(img, codes[i, layer], args[i, layer], fill, bicubic, tmp)


@njit(cache=True)
def normalize(images, lut, out):
    """out[..., c] = lut[c, images[..., c]]: ``ToTensor`` + ``Normalize`` of uint8 (B, H, W, 3)
    images into float (B, H, W, 3), by a table of the 256 values each band can take (the
    table holds the per-element float operations' results, so the values are the same)."""
    flat_in = images.reshape(-1, 3)
    flat_out = out.reshape(-1, 3)
    for i in range(flat_in.shape[0]):
        for c in range(3):
            flat_out[i, c] = lut[c, flat_in[i, c]]
