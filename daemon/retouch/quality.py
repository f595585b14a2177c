"""Image-quality metrics used by the tests, the benchmarks and the training scripts (numpy only)."""

from __future__ import annotations

import numpy as np

from .ops.lab import rgb_to_lab


def to_y(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma on the 16..235 scale, the convention of SR papers (input: uint8 or float in [0, 1])."""
    x = rgb.astype(np.float64)
    if rgb.dtype == np.uint8:
        x = x / 255.0
    return 16.0 + 65.481 * x[..., 0] + 128.553 * x[..., 1] + 24.966 * x[..., 2]


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


def psnr_y(a: np.ndarray, b: np.ndarray, border: int = 4) -> float:
    """PSNR on the Y channel with `border` pixels cropped on each side (the SR benchmark convention)."""
    ya, yb = to_y(a), to_y(b)
    if border:
        ya, yb = ya[border:-border, border:-border], yb[border:-border, border:-border]
    return psnr(ya, yb)


def ab_error(rgb: np.ndarray, true_ab: np.ndarray) -> float:
    """Mean Euclidean distance per pixel between the CIELAB a*, b* of `rgb` (sRGB in [0, 1]) and `true_ab`
    (H x W x 2): the colorize task's error."""
    return float(np.hypot(*(rgb_to_lab(rgb)[..., 1:] - true_ab).transpose(2, 0, 1)).mean())
