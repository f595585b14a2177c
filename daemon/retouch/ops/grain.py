"""Film-like grain, re-injected after a model so smooth results do not look "plastic".

Fine (slightly soft, about one pixel) monochrome grain, strongest in the midtones and fading to nothing in pure
black and pure white, as film grain does. Seeded: the same seed gives the same grain, so reruns are identical.
"""

from __future__ import annotations

import cv2
import numpy as np

from .tone import LUMA

GRAIN_STD_AT_FULL = 0.04  # grain standard deviation in the midtones at amount 1 (about 10 of 255 levels)


def midtone_weight(color: np.ndarray) -> np.ndarray:
    """4 Y (1 - Y): 0 at black and white, 1 at Y = 0.5 (Rec. 709 luma of the sRGB-encoded values)."""
    y = np.clip(color @ LUMA, 0.0, 1.0)
    return 4.0 * y * (1.0 - y)


def grain_field(height: int, width: int, seed: int) -> np.ndarray:
    """Unit-variance fine grain, H x W float32, the same for the same seed and size."""
    noise = np.random.default_rng(seed).standard_normal((height, width), dtype=np.float32)
    soft = cv2.GaussianBlur(noise, (0, 0), 0.6, borderType=cv2.BORDER_REFLECT)
    return soft / max(float(soft.std()), 1e-6)


def add_grain(color: np.ndarray, amount: float, seed: int) -> np.ndarray:
    if amount <= 0:
        return color
    field = grain_field(color.shape[0], color.shape[1], seed)
    delta = (amount * GRAIN_STD_AT_FULL) * field * midtone_weight(color)
    return np.clip(color + delta[:, :, None], 0.0, 1.0).astype(np.float32)
