"""Tiled inference with overlap and a smooth (raised-cosine) blend, so tile borders leave no seams.

Each tile is read with `pad` extra pixels of context on every side that is not an image border; the context is
cut away after the model. Neighbouring tiles overlap by `overlap` pixels (input scale) and are blended there with
weights sin^2 / cos^2, which sum to one, so a flat gradient through the tiled path equals the untiled one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

TileFn = Callable[[np.ndarray], np.ndarray]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    step = tile - overlap
    n = math.ceil((length - tile) / step) + 1
    starts = [min(i * step, length - tile) for i in range(n)]
    return sorted(set(starts))


def _ramp(n: int, overlap: int, ramp_in: bool, ramp_out: bool) -> np.ndarray:
    w = np.ones(n, np.float32)
    if overlap <= 0:
        return w
    t = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
    up = np.sin(t * (math.pi / 2)) ** 2
    if ramp_in:
        w[:overlap] *= up
    if ramp_out:
        w[n - overlap :] *= up[::-1]
    return w


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    return len(tile_starts(height, tile, overlap)) * len(tile_starts(width, tile, overlap))


def run_tiled(
    image: np.ndarray,
    fn: TileFn,
    scale: int,
    tile: int,
    overlap: int = 32,
    pad: int = 8,
    on_tile: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Apply `fn` (H x W x C float32 -> H*scale x W*scale x C') over `image` tile by tile.

    `on_tile(done, total)` is called after each tile (progress, cancellation checks raise from there).
    """
    h, w = image.shape[:2]
    overlap = min(overlap, tile // 2)
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    total = len(ys) * len(xs)
    if total == 1:
        out = fn(image)
        if on_tile:
            on_tile(1, 1)
        return out
    acc: np.ndarray | None = None
    weight = np.zeros((h * scale, w * scale, 1), np.float32)
    done = 0
    for y0 in ys:
        th = min(tile, h - y0)
        for x0 in xs:
            tw = min(tile, w - x0)
            cy0, cx0 = max(0, y0 - pad), max(0, x0 - pad)
            cy1, cx1 = min(h, y0 + th + pad), min(w, x0 + tw + pad)
            out = fn(image[cy0:cy1, cx0:cx1])
            oy, ox = (y0 - cy0) * scale, (x0 - cx0) * scale
            out = out[oy : oy + th * scale, ox : ox + tw * scale]
            if acc is None:
                acc = np.zeros((h * scale, w * scale, out.shape[2]), np.float32)
            wy = _ramp(th * scale, overlap * scale, y0 > 0, y0 + th < h)
            wx = _ramp(tw * scale, overlap * scale, x0 > 0, x0 + tw < w)
            wt = (wy[:, None] * wx[None, :])[:, :, None]
            ys_, xs_ = slice(y0 * scale, (y0 + th) * scale), slice(x0 * scale, (x0 + tw) * scale)
            acc[ys_, xs_] += out * wt
            weight[ys_, xs_] += wt
            done += 1
            if on_tile:
                on_tile(done, total)
    assert acc is not None
    return acc / weight
