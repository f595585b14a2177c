"""sRGB <-> CIELAB (D65), exact formulas in numpy, and a gamut mapping that keeps L* while it fits colour in.

The colorize task keeps the input's lightness: it takes L* from the input and a*, b* from the model, and where that
colour falls outside sRGB it shrinks the chroma (a*, b* toward 0) just enough, never touching L*. The training
script computes its loss with the same formulas (`training/train_colorize.py`, in torch).
"""

from __future__ import annotations

import numpy as np

RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]], np.float64)
XYZ_TO_RGB = np.linalg.inv(RGB_TO_XYZ)
WHITE = np.array([0.95047, 1.0, 1.08883])  # D65
EPS, KAPPA = 216 / 24389, 24389 / 27
FIT_STEPS = 12  # bisection steps of the chroma scale: 1/4096 of the colour's chroma


def _to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((np.maximum(x, 0) + 0.055) / 1.055) ** 2.4)


def _to_srgb(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.maximum(x, 0) ** (1 / 2.4) - 0.055)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 sRGB in [0, 1] -> L* (0..100), a*, b*."""
    xyz = _to_linear(rgb.astype(np.float64)) @ RGB_TO_XYZ.T / WHITE
    f = np.where(xyz > EPS, np.cbrt(xyz), (KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """L*, a*, b* -> sRGB, not clipped (out-of-gamut colours fall outside [0, 1])."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f**3 > EPS, f**3, (116 * f - 16) / KAPPA) * WHITE
    return _to_srgb(xyz @ XYZ_TO_RGB.T)


def lightness(rgb: np.ndarray) -> np.ndarray:
    """L* (H x W) of an sRGB image."""
    return rgb_to_lab(rgb)[..., 0]


def gray_of(light: np.ndarray) -> np.ndarray:
    """The neutral sRGB image (H x W x 3 float32) with lightness `light`."""
    lab = np.stack([light, np.zeros_like(light), np.zeros_like(light)], -1)
    return np.clip(lab_to_rgb(lab), 0, 1).astype(np.float32)


def fit_chroma(light: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """sRGB (float32, in [0, 1]) of L* `light` with the colour `ab` shrunk toward neutral, per pixel, until it fits:
    L* is kept exactly (up to rounding), only chroma gives way. Only the pixels out of gamut are searched."""
    def fits(rgb: np.ndarray) -> np.ndarray:
        return ((rgb >= -1e-6) & (rgb <= 1 + 1e-6)).all(-1)

    rgb = lab_to_rgb(np.concatenate([light[..., None], ab], -1))
    out = ~fits(rgb)
    if out.any():
        lo, hi = np.zeros(int(out.sum())), np.ones(int(out.sum()))
        light_out, ab_out = light[out], ab[out]
        for _ in range(FIT_STEPS):
            mid = (lo + hi) / 2
            inside = fits(lab_to_rgb(np.concatenate([light_out[:, None], ab_out * mid[:, None]], -1)))
            lo, hi = np.where(inside, mid, lo), np.where(inside, hi, mid)
        rgb[out] = lab_to_rgb(np.concatenate([light_out[:, None], ab_out * lo[:, None]], -1))
    return np.clip(rgb, 0, 1).astype(np.float32)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness M of an sRGB image, on the 0..255 scale (15: slightly colourful,
    33: moderately, 45: averagely, 59: quite)."""
    x = rgb.astype(np.float64) * 255
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
