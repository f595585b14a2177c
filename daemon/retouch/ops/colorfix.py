"""Colour fix: keep the source's low-frequency colour so a model's result never drifts in colour.

- `wavelet`: the result's fine detail (an a-trous wavelet's high bands) over the source's coarse band, per RGB
  channel (the StableSR recipe).
- `adain`: the result's per-channel mean and standard deviation in CIELAB matched to the source's.
`reference` is the source at the result's size (resized for upscaling).
"""

from __future__ import annotations

import cv2
import numpy as np

LEVELS = 5
_B3 = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float32) / 16


def _atrous_blur(x: np.ndarray, level: int) -> np.ndarray:
    d = 2**level
    k = np.zeros((2 * d + 1, 2 * d + 1), np.float32)
    k[::d, ::d] = _B3
    return cv2.filter2D(x, -1, k, borderType=cv2.BORDER_REFLECT)


def low_band(x: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    for level in range(levels):
        x = _atrous_blur(x, level)
    return x


def wavelet_fix(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.clip(result - low_band(result) + low_band(reference), 0.0, 1.0).astype(np.float32)


def adain_fix(result: np.ndarray, reference: np.ndarray) -> np.ndarray:
    res = cv2.cvtColor(np.clip(result, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)
    ref = cv2.cvtColor(np.clip(reference, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab)
    mu_res, sd_res = res.mean(axis=(0, 1)), res.std(axis=(0, 1))
    mu_ref, sd_ref = ref.mean(axis=(0, 1)), ref.std(axis=(0, 1))
    out = (res - mu_res) / np.maximum(sd_res, 1e-3) * sd_ref + mu_ref
    return np.clip(cv2.cvtColor(out.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)


COLOR_FIXES = {"wavelet": wavelet_fix, "adain": adain_fix}


def color_fix(result: np.ndarray, reference: np.ndarray, method: str) -> np.ndarray:
    if method == "none":
        return result
    return COLOR_FIXES[method](result, reference)
