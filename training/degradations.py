"""Synthetic degradations for training and measuring the denoise and sharpen models.

Everything works on float32 N x 3 x H x W tensors in [0, 1] (sRGB-encoded, as photos are stored), seeded through a
`random.Random` so a run is reproducible. The benchmark and the tests use the same functions with fixed settings
(Gaussian noise of a known sigma, a Gaussian or motion kernel of a known shape), so what we measure is what we train.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch
import torch.nn.functional as F
from retouch.tasks.sharpen import BLUR_HINTS  # noqa: F401  (the sharpen model's conditioning values)

KERNEL_SIZE = 21  # blur kernels live on a 21 x 21 grid: motion up to ~17 px, Gaussian sigma up to ~3.3


def gaussian_kernel(sigma: float, size: int = KERNEL_SIZE, sigma_y: float | None = None, angle: float = 0.0):
    """An (optionally anisotropic, rotated) normalised Gaussian kernel, size x size float32."""
    sigma_y = sigma if sigma_y is None else sigma_y
    r = size // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    k = np.exp(-0.5 * ((u / sigma) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


def disk_kernel(radius: float, size: int = KERNEL_SIZE) -> np.ndarray:
    """A defocus (pillbox) kernel with an antialiased rim."""
    r = size // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    k = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0)
    return (k / k.sum()).astype(np.float32)


def motion_kernel(length: float, rng: random.Random, size: int = KERNEL_SIZE) -> np.ndarray:
    """Camera shake: a random smooth short trajectory of about `length` px, splatted bilinearly and centred."""
    steps = 64
    angle = rng.uniform(0, 2 * math.pi)
    curvature = rng.uniform(-1.5, 1.5) / steps
    jitter = rng.uniform(0.0, 0.6)
    pts, pos, direction = [], np.zeros(2), angle
    for _ in range(steps):
        pts.append(pos.copy())
        direction += curvature + rng.gauss(0, jitter) / math.sqrt(steps)
        pos += np.array([math.cos(direction), math.sin(direction)])
    pts_arr = np.array(pts)
    extent = np.linalg.norm(pts_arr.max(0) - pts_arr.min(0)) or 1.0
    pts_arr = (pts_arr - pts_arr.mean(0)) * (length / extent)
    # the camera dwells unevenly along the path
    speed = np.array([rng.uniform(0.3, 1.0) for _ in range(steps)])
    return splat_path(pts_arr, speed, size)


def splat_path(path: np.ndarray, dwell: np.ndarray, size: int = KERNEL_SIZE) -> np.ndarray:
    """A kernel from a camera path (N x 2 points x, y around 0) and the time spent at each point: each point
    splatted bilinearly on a size x size grid centred on 0 (points off the grid dropped), normalised (float32)."""
    k = np.zeros((size, size), np.float64)
    c = size // 2
    for (px, py), w in zip(path, dwell, strict=True):
        x, y = px + c, py + c
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                yy, xx = y0 + dy, x0 + dx
                if 0 <= yy < size and 0 <= xx < size:
                    k[yy, xx] += w * wy * wx
    return (k / k.sum()).astype(np.float32)


def blur(x: torch.Tensor, kernel: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convolve every channel of x (N x C x H x W) with one kernel, reflect-padded so the size is kept."""
    if isinstance(kernel, np.ndarray):
        kernel = torch.from_numpy(np.ascontiguousarray(kernel))
    k = kernel.flip(0, 1).to(x)
    r = kernel.shape[0] // 2
    c = x.shape[1]
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    return F.conv2d(xp, k[None, None].repeat(c, 1, 1, 1), groups=c)


def gaussian_noise(x: torch.Tensor, sigma: float, gen: torch.Generator | None = None) -> torch.Tensor:
    return x + torch.randn(x.shape, generator=gen, dtype=x.dtype) * sigma


def quantize8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


def _normal(shape: torch.Size, like: torch.Tensor, rng: random.Random, gen: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like `like`: from `gen` on `like`'s device, else from a CPU generator seeded by
    `rng` (the reproducible CPU path)."""
    if gen is not None:
        return torch.randn(shape, generator=gen, device=like.device, dtype=like.dtype)
    return torch.randn(shape, generator=torch.Generator().manual_seed(rng.getrandbits(31))).to(like)


def random_noise(x: torch.Tensor, rng: random.Random,
                 gen: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
    """Sensor-like noise on one 1 x 3 x H x W image; returns (noisy, effective sigma on the 0..1 scale).

    Half of the samples get plain Gaussian noise; the rest a Poisson-Gaussian (signal-dependent) mix, or noise with
    a random colour covariance (luminance-heavy or chroma-heavy), sometimes spatially correlated as demosaicing leaves
    it. The returned sigma is the RMS standard deviation actually added, which is what `--noise-level` means.
    """
    sigma = rng.uniform(0.0, 52.0) / 255 if rng.random() < 0.85 else rng.uniform(0.0, 12.0) / 255
    kind = rng.random()
    z = _normal(x.shape, x, rng, gen)
    if kind < 0.5:
        n = z
    elif kind < 0.75:  # colour covariance: luminance-correlated with a chroma part
        lum = rng.uniform(0.0, 1.0)
        mix = (torch.full((3, 3), lum / 3) + torch.eye(3) * (1 - lum)).to(x)
        n = torch.einsum("ij,njhw->nihw", mix, z)
    else:  # Poisson-Gaussian: variance a*x + b^2, normalised below to the drawn RMS sigma
        share = rng.uniform(0.3, 1.0)
        n = z * torch.sqrt(share * x.clamp(0.0, 1.0) / 0.5 + (1 - share) + 1e-6)
    if rng.random() < 0.25:  # demosaiced noise is spatially correlated
        n = blur(n, gaussian_kernel(rng.uniform(0.4, 0.8), size=5))
    n = n / n.pow(2).mean().sqrt().clamp_min(1e-8) * sigma
    noisy = (x + n).clamp(0, 1)
    if rng.random() < 0.5:
        noisy = quantize8(noisy)
    return noisy, sigma



class KernelBank:
    """Blur kernels drawn ahead of training (a camera-shake kernel costs a Python loop of ~0.3 ms): `count` of each
    family with the distributions of `random_blur`; a draw adds a random flip and quarter turn, so 8x as many
    distinct kernels come out. Lets a GPU training loop degrade a batch without waiting for the CPU."""

    def __init__(self, rng: random.Random, count: int = 2048, device: torch.device | str = "cpu") -> None:
        def stack(kernels: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(kernels)).to(device)

        self.defocus = stack([_defocus_kernel(rng) for _ in range(count)])
        self.motion = stack([motion_kernel(rng.uniform(2.0, 16.0), rng) for _ in range(count)])

    def draw(self, kind: str, rng: random.Random) -> torch.Tensor:
        bank = self.motion if kind == "motion" else self.defocus
        k = torch.rot90(bank[rng.randrange(len(bank))], rng.randrange(4))
        return k.flip(1) if rng.random() < 0.5 else k


def _defocus_kernel(rng: random.Random) -> np.ndarray:
    """Gaussian (anisotropic, rotated) for 5 in 9 draws, pillbox for 4 in 9: the shares of `random_blur`."""
    if rng.random() < 5 / 9:
        s = rng.uniform(0.5, 3.0)
        return gaussian_kernel(s, sigma_y=s * rng.uniform(0.7, 1.0), angle=rng.uniform(0, math.pi))
    return disk_kernel(rng.uniform(0.8, 4.0))


def random_blur(x: torch.Tensor, rng: random.Random, gen: torch.Generator | None = None,
                bank: KernelBank | None = None, motion_share: float = 0.5) -> tuple[torch.Tensor, str]:
    """Defocus or camera shake plus mild noise on one 1 x 3 x H x W image; returns (blurred, "defocus"|"motion").

    With a `bank` the kernels come from it instead of being drawn afresh (same families and shares). `motion_share`
    of the draws are camera shake; 5 % are nearly sharp; the rest defocus."""
    r = rng.random()
    if r < 0.05:
        kind, k = "defocus", gaussian_kernel(0.3)  # nearly sharp input: the model must leave it alone
    elif r < 1.0 - motion_share:
        kind = "defocus"
        k = bank.draw(kind, rng) if bank else _defocus_kernel(rng)
    else:
        kind = "motion"
        k = bank.draw(kind, rng) if bank else motion_kernel(rng.uniform(2.0, 16.0), rng)
    y = blur(x, k)
    sigma = rng.choice([0.0, rng.uniform(0.0, 4.0)]) / 255
    if sigma:
        y = y + _normal(y.shape, y, rng, gen) * sigma
    y = y.clamp(0, 1)
    if rng.random() < 0.5:
        y = quantize8(y)
    return y, kind
