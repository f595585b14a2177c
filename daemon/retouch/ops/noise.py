"""Blind noise-level estimation for `--noise-level auto`.

The patch-PCA estimator of Chen, Zhu and Heng (ICCV 2015): in the covariance of small patches, image structure
lives in a few large eigenvalues while white noise spreads evenly over all of them; the noise variance is the mean
of the trailing eigenvalues, found as the largest tail whose mean splits it into equally many values above and
below. It needs no training and holds up on textured photos, where Laplacian-based estimators over-estimate.
"""

from __future__ import annotations

import numpy as np

PATCH = 7
MAX_PATCHES = 30_000


def _patches(color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = color.shape[:2]
    ys = rng.integers(0, h - PATCH + 1, size=MAX_PATCHES)
    xs = rng.integers(0, w - PATCH + 1, size=MAX_PATCHES)
    dy, dx = np.mgrid[0:PATCH, 0:PATCH]
    rows = ys[:, None, None] + dy[None]
    cols = xs[:, None, None] + dx[None]
    return color[rows, cols].reshape(MAX_PATCHES, -1).astype(np.float32)


def estimate_sigma(color: np.ndarray, seed: int = 0) -> float:
    """Standard deviation of the white noise in `color` (H x W x C float in [0, 1]), on the same 0..1 scale."""
    if color.shape[0] < PATCH or color.shape[1] < PATCH:
        return 0.0
    x = _patches(color, np.random.default_rng(seed))
    x -= x.mean(axis=0, keepdims=True)
    eig = np.sort(np.linalg.eigvalsh((x.T @ x).astype(np.float64) / len(x)))
    eig = np.clip(eig, 0.0, None)
    for n in range(len(eig), 0, -1):
        tail = eig[:n]
        tau = tail.mean()
        if np.count_nonzero(tail > tau) == np.count_nonzero(tail < tau):
            return float(np.sqrt(tau))
    return float(np.sqrt(eig[0]))
