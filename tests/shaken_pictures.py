"""Camera shake with a point of light that records it, for the blur-trace tests (daemon, CLI and both editors)."""

from __future__ import annotations

import cv2
import numpy as np


def shake_kernel() -> np.ndarray:
    """A camera shake of about 11 px along an S-shaped path, point-symmetric about the grid's centre so that its
    centre of mass is the centre (21 x 21, sums to 1)."""
    canvas = np.zeros((21 * 8, 21 * 8), np.float32)
    points = [(int(8 * (10.5 + t)), int(8 * (10.5 + 0.03 * t**3))) for t in np.linspace(-5, 5, 11)]
    for a, b in zip(points, points[1:], strict=False):
        cv2.line(canvas, a, b, 1.0, 8, cv2.LINE_AA)
    kernel = cv2.resize(canvas, (21, 21), interpolation=cv2.INTER_AREA)
    return kernel / kernel.sum()


def shake(sharp: np.ndarray) -> np.ndarray:
    """`sharp` (float, H x W x C) blurred by shake_kernel, borders reflected."""
    return cv2.filter2D(sharp, -1, shake_kernel()[::-1, ::-1].copy(), borderType=cv2.BORDER_REFLECT)


def with_a_lamp(clean_u8: np.ndarray, dark: tuple[int, int, int, int], lamp: tuple[int, int], seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(`clean_u8` with a dark area `dark` = x0, y0, x1, y1 holding a one-pixel lamp at `lamp` = x, y, that picture
    shaken by shake_kernel plus sensor noise sigma 2 of 255), both u8."""
    sharp = clean_u8.astype(np.float32) / np.float32(255)
    x0, y0, x1, y1 = dark
    sharp[y0:y1, x0:x1] = 0.1
    sharp[lamp[1], lamp[0]] = 1.0
    noisy = shake(sharp) + np.random.default_rng(seed).normal(0.0, 2 / 255, sharp.shape).astype(np.float32)
    return to_u8(sharp), to_u8(noisy)


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
