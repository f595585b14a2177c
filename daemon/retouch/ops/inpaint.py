"""Masks for the restore task: growing and feathering what is to be filled, and the classical fill (OpenCV Telea)."""

from __future__ import annotations

import cv2
import numpy as np

TELEA_RADIUS = 3  # px: the neighbourhood OpenCV's fast marching averages over
FEATHER = 1.0  # px: sigma of the soft edge where the fill meets the untouched photo


def grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """`mask` (H x W bool) dilated by a disc of `radius` px."""
    if radius <= 0 or not mask.any():
        return mask.astype(bool)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), disc).astype(bool)


def feather(mask: np.ndarray, sigma: float = FEATHER) -> np.ndarray:
    """A soft version of `mask` (H x W float32 in [0, 1]) that is 1 on every masked pixel and fades out beside it,
    reaching 0 within 2 sigma."""
    side = 2 * int(np.ceil(2 * sigma)) + 1  # the kernel ends 2 sigma out: beyond that the input stays exact
    soft = cv2.GaussianBlur(mask.astype(np.float32), (side, side), sigma) * 2.0  # 1 at a straight edge
    return np.maximum(soft, mask).clip(0, 1).astype(np.float32)


def telea(color: np.ndarray, mask: np.ndarray, radius: int = TELEA_RADIUS) -> np.ndarray:
    """OpenCV's Telea inpainting of the masked pixels (H x W x 3 float32 in [0, 1]), channel by channel in float so
    16-bit and float images keep their precision. OpenCV's float path works on the 0..255 scale (on 0..1 values it
    fills with garbage), so the planes are scaled there and back."""
    m = mask.astype(np.uint8)
    planes = [cv2.inpaint(np.ascontiguousarray(color[:, :, c] * 255, np.float32), m, radius, cv2.INPAINT_TELEA)
              for c in range(color.shape[2])]
    return np.clip(np.stack(planes, 2) / 255, 0, 1).astype(np.float32)
