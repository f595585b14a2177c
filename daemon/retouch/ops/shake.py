"""The camera shake's kernel estimated from the picture itself, and what `--blur motion` does with it.

Two measurements feed a small learned refiner:
- the least-squares kernel that blurs the sharpener's output into the picture (on the luminance gradients,
  non-negative, 21 x 21). It has the shake's direction and shape but comes out too short and patchy, because the
  sharpener's output is itself still a little blurred;
- the autocorrelation of the picture's gradients, which on a natural image is about the kernel's own
  autocorrelation (its length and direction, not its sign).

The refiner (`ShakeRefiner`, 6 dilated convolutions, 47k weights) maps both to the kernel, once for each of the
eight turns and flips of its input; their mean is the estimate, their spread a measure of its doubt. The picture
deconvolved with that kernel (`deconvolve.py`, our denoiser as the prior) is then mixed into the sharpener's result:
their errors (blur left over; ringing where the kernel is off) are largely independent. How much is mixed in (none,
a quarter, a half or three quarters) is chosen per picture by a gate, three linear predictions of the gain from
measurements that need no clean original (how far the deconvolution strays from the sharpener's result, how well
the kernels agree, the refiner's doubt, noise, detail).
The refiner and the gate were fitted by `training/train_shake_kernel.py` on crops of the training photos (MODELS.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

KERNEL_SIZE = 21  # px: shakes up to about 17 px
REACH = 20  # px: the autocorrelation's radius (2 x the kernel's)
RIDGE = 1e-3  # Tikhonov weight of the least-squares kernel, relative to the mean gradient energy
STEPS = 300  # projected-gradient steps towards the non-negative least-squares kernel
FLOOR = 0.05  # share of the kernel's peak below which a weight is dropped
MIN_SIDE = 64  # px: a smaller picture says too little about its shake
REFINER_FILE = Path(__file__).resolve().parent.parent / "models" / "kernel" / "retouch-shake-kernel.safetensors"
WINDOW = 512  # px: the kernel is estimated on the picture's central window of at most this side
# The gate: for each share of the deconvolution, the coefficients of a linear prediction of the gain in dB over the
# sharpener's result from `gate_features` (ridge regression on 640 validation crops, train_shake_kernel.py fit-gate)
GATE = {0.25: (0.597, -0.444, 0.139, 0.055, -0.484, 0.186, 0.138, -0.311, -0.535),
        0.5: (0.173, -1.315, -0.060, 0.125, -1.050, 0.506, 0.462, -0.654, -1.379),
        0.75: (-1.445, -2.163, -0.507, 0.210, -1.355, 0.737, 0.875, -0.958, -2.208)}

_lock = threading.Lock()
_refiner: ShakeRefiner | None = None


class ShakeRefiner(nn.Module):
    """(least-squares kernel scaled to peak 1, gradient autocorrelation scaled to peak 1), each 41 x 41 and centred
    -> the kernel, 21 x 21, non-negative, summing to 1."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 2
        for dilation in (1, 1, 2, 4, 8, 1):
            layers += [nn.Conv2d(width, channels, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
            width = channels
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = REACH - KERNEL_SIZE // 2, REACH + KERNEL_SIZE // 2 + 1
        logits = self.head(self.body(x))[:, 0, lo:hi, lo:hi].reshape(len(x), -1)
        return torch.softmax(logits, dim=1).reshape(-1, KERNEL_SIZE, KERNEL_SIZE)


def luminance(color: np.ndarray) -> np.ndarray:
    return np.asarray(color, np.float64) @ np.array([0.299, 0.587, 0.114])


def gradients(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward differences along x and along y, on the same (H-1) x (W-1) grid."""
    return gray[:-1, 1:] - gray[:-1, :-1], gray[1:, :-1] - gray[:-1, :-1]


def cross_correlation(a: np.ndarray, b: np.ndarray, radius: int) -> np.ndarray:
    """C(t) = sum over p of a(p + t) b(p), for t in [-radius, radius]^2 (zero outside the arrays)."""
    shape = (a.shape[0] + 2 * radius, a.shape[1] + 2 * radius)
    full = np.fft.irfft2(np.fft.rfft2(a, s=shape) * np.conj(np.fft.rfft2(b, s=shape)), s=shape)
    return np.roll(full, (radius, radius), axis=(0, 1))[:2 * radius + 1, :2 * radius + 1]


def least_squares_kernel(blurred: np.ndarray, estimate: np.ndarray, size: int = KERNEL_SIZE) -> np.ndarray:
    """The non-negative `size` x `size` kernel k minimising |k * grad(estimate) - grad(blurred)|^2 (+ a small ridge),
    from the normal equations built by FFT (the gradients' auto- and cross-correlations); sums to 1."""
    r = size // 2
    offsets = np.stack(np.mgrid[:size, :size], -1).reshape(-1, 2)
    between = offsets[None, :, :] - offsets[:, None, :] + size - 1
    normal, rhs = 0.0, 0.0
    for de, db in zip(gradients(luminance(estimate)), gradients(luminance(blurred)), strict=True):
        auto = cross_correlation(de, de, size - 1)
        normal = normal + auto[between[..., 0], between[..., 1]]
        rhs = rhs + cross_correlation(de, db, r)[offsets[:, 0], offsets[:, 1]]
    normal = normal + RIDGE * np.trace(normal) / len(offsets) * np.eye(len(offsets))
    step = 1.0 / np.linalg.eigvalsh(normal).max()
    w = np.clip(np.linalg.solve(normal, rhs), 0.0, None)
    for _ in range(STEPS):
        w = np.clip(w - step * (normal @ w - rhs), 0.0, None)
    kernel = w.reshape(size, size)[::-1, ::-1]
    if kernel.sum() <= 0:
        kernel = np.zeros((size, size))
        kernel[r, r] = 1.0
    return cleaned(kernel, floor=0.0)


def rough_kernel(blurred: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """The least-squares kernel that blurs `estimate` into `blurred`, centred on the KERNEL_SIZE grid."""
    return centred(least_squares_kernel(blurred, estimate), KERNEL_SIZE)


def gradient_autocorrelation(blurred: np.ndarray, radius: int = REACH) -> np.ndarray:
    """The autocorrelation of the picture's luminance gradients (Hann-windowed), (2 radius + 1)^2, peak 1."""
    gray = luminance(blurred)
    window = np.outer(np.hanning(gray.shape[0]), np.hanning(gray.shape[1]))[:-1, :-1]
    total = 0.0
    for d in gradients(gray):
        d = (d - d.mean()) * window
        total = total + cross_correlation(d, d, radius)
    return total / total.max()


def centred(kernel: np.ndarray, side: int) -> np.ndarray:
    """`kernel` (odd square, at most `side`) on a `side` x `side` grid, its centre of mass moved to the middle
    (bilinear; weight moved off the grid is lost)."""
    kernel = np.asarray(kernel, np.float64) / kernel.sum()
    grid = np.zeros((side, side))
    pad = (side - kernel.shape[0]) // 2
    grid[pad:pad + kernel.shape[0], pad:pad + kernel.shape[1]] = kernel
    yy, xx = np.mgrid[:side, :side]
    shift = np.float64([[1, 0, side // 2 - (grid * xx).sum()], [0, 1, side // 2 - (grid * yy).sum()]])
    return cv2.warpAffine(grid, shift, (side, side), flags=cv2.INTER_LINEAR, borderValue=0.0)


def cleaned(kernel: np.ndarray, floor: float = FLOOR) -> np.ndarray:
    """Weights under `floor` of the peak dropped, and all but the heaviest connected piece; sums to 1."""
    kernel = np.where(kernel >= floor * kernel.max(), kernel, 0.0)
    count, labels = cv2.connectedComponents((kernel > 0).astype(np.uint8), connectivity=8)
    if count > 2:
        heaviest = 1 + int(np.argmax([kernel[labels == i].sum() for i in range(1, count)]))
        kernel = np.where(labels == heaviest, kernel, 0.0)
    return kernel / kernel.sum()


def refiner() -> ShakeRefiner:
    """The builtin refiner, loaded once per process."""
    global _refiner
    with _lock:
        if _refiner is None:
            net = ShakeRefiner()
            net.load_state_dict(load_file(str(REFINER_FILE)))
            _refiner = net.eval()
        return _refiner


@dataclass(frozen=True)
class ShakeEstimate:
    kernel: np.ndarray  # the refined kernel, 21 x 21 float64, summing to 1
    rough: np.ndarray  # the least-squares kernel it was refined from (centred, 21 x 21)
    spread: float  # how far the refiner's eight answers (turns and flips) lie from their mean, L1 (0..2)


def estimate_shake(blurred: np.ndarray, sharpened: np.ndarray, net: ShakeRefiner | None = None) -> ShakeEstimate:
    """The shake of `blurred` (H x W x 3 float in [0, 1]), given the sharpener's output for it; `net`: the refiner
    (default: the builtin one). ValueError when the picture is under MIN_SIDE px on a side."""
    if min(blurred.shape[:2]) < MIN_SIDE:
        raise ValueError(f"the picture is {blurred.shape[1]}x{blurred.shape[0]} px: estimating its shake needs at "
                         f"least {MIN_SIDE} px on each side")
    rough = rough_kernel(blurred, sharpened)
    kernel, spread = refined(refiner() if net is None else net, refiner_input(blurred, rough))
    return ShakeEstimate(kernel, rough, spread)


def refined(net: ShakeRefiner, inputs: np.ndarray) -> tuple[np.ndarray, float]:
    """The refiner's kernel for one `refiner_input`, averaged over the input's eight turns and flips (each answer
    turned back): a shake turned with the picture turns its kernel, so each is an estimate of the same kernel, and
    their mean is closer to it (held-back samples: L1 0.724 -> 0.700). Returns the kernel (cleaned, 21 x 21
    float64) and the eight answers' spread (their mean L1 distance to the mean, 0..2), which follows the kernel's
    error (correlation 0.75 on the held-back samples)."""
    x = torch.from_numpy(np.ascontiguousarray(inputs, np.float32))[None]
    turned = [torch.rot90(x, turns, (2, 3)) for turns in range(4)]
    with torch.no_grad():
        out = net(torch.cat(turned + [t.flip(3) for t in turned]))
    back = torch.stack([torch.rot90(out[i], -i, (0, 1)) for i in range(4)] +
                       [torch.rot90(out[4 + i].flip(1), -i, (0, 1)) for i in range(4)]).double()
    mean = back.mean(0)
    return cleaned(mean.numpy()), float((back - mean).abs().sum((1, 2)).mean())


def refiner_input(blurred: np.ndarray, rough: np.ndarray) -> np.ndarray:
    """The refiner's two 41 x 41 channels: the least-squares kernel `rough` (centred, 21 x 21) and the picture's
    gradient autocorrelation, each scaled to peak 1."""
    rough = np.pad(rough, REACH - KERNEL_SIZE // 2)
    return np.stack([rough / max(rough.max(), 1e-8), gradient_autocorrelation(blurred)]).astype(np.float32)


def central_window(image: np.ndarray, side: int = WINDOW) -> np.ndarray:
    """The picture's central `side` x `side` window (the whole picture along a shorter side)."""
    h, w = image.shape[:2]
    top, left = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[top:top + side, left:left + side]


def kernel_error(a: np.ndarray, b: np.ndarray) -> float:
    """L1 distance (0..2) between two kernels, both centred on a 21 x 21 grid."""
    return float(np.abs(centred(a, KERNEL_SIZE) - centred(b, KERNEL_SIZE)).sum())


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))


def gate_features(blurred: np.ndarray, sharpened: np.ndarray, deconvolved: np.ndarray, estimate: ShakeEstimate,
                  noise: float) -> np.ndarray:
    """What the gate sees, no clean original needed (all on the same window of the picture, logarithms):
    1, how far the deconvolution strays from the sharpener's result as a multiple of how far that went from the
    picture, how far that went, the least-squares kernel's distance to the refined kernel, the distance to it of the
    least-squares kernel against the deconvolution, the noise level, the picture's gradient energy, the kernel's
    peak, and the spread of the refiner's eight answers."""
    moved = max(rms(sharpened - blurred), 1e-9)
    kernel = estimate.kernel
    again = rough_kernel(blurred, deconvolved)
    measured = [rms(deconvolved - sharpened) / moved, moved, kernel_error(estimate.rough, kernel),
                kernel_error(again, kernel), noise + 1e-4, rms(np.diff(luminance(blurred), axis=1)), kernel.max(),
                estimate.spread]
    return np.concatenate([[1.0], np.log(np.maximum(measured, 1e-12))])


def predicted_gains(features: np.ndarray, gate: dict[float, Any] = GATE) -> dict[float, float]:
    """The gate's predicted gain (dB over the sharpener's result) for each share of the deconvolution."""
    return {share: float(features @ np.asarray(coefficients)) for share, coefficients in gate.items()}


def best_share(features: np.ndarray, gate: dict[float, Any] = GATE) -> tuple[float, float]:
    """(the share of the deconvolution to mix in, its predicted gain): the largest predicted gain, or (0, 0) where
    none is positive."""
    return max(((0.0, 0.0), *predicted_gains(features, gate).items()), key=lambda pair: pair[1])


def mix_with_deconvolution(blurred: np.ndarray, sharpened: np.ndarray, noise: float,
                           deconvolve_with: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, dict]:
    """The sharpener's result mixed with the picture deconvolved by its estimated shake, as much as the gate
    predicts a gain for (see the module's docstring); `noise` is the picture's noise level (0..1 scale),
    `deconvolve_with(kernel)` deconvolves the whole picture. The kernel and the gate's measurements come from the
    picture's central window (WINDOW). Returns the image and a report: `kernel_extent` (the shake's length, px),
    `share` (of the deconvolution in the result, 0 to 0.75) and `predicted_gain_db` (the gate's, for that share)."""
    window = (central_window(blurred), central_window(sharpened))
    estimate = estimate_shake(*window)
    deconvolved = deconvolve_with(estimate.kernel)
    features = gate_features(*window, central_window(deconvolved), estimate, noise)
    share, gain = best_share(features)
    report = {"kernel_extent": kernel_extent(estimate.kernel), "share": share, "predicted_gain_db": round(gain, 2)}
    if share == 0.0:
        return sharpened, report
    return np.ascontiguousarray((1 - share) * sharpened + share * deconvolved, np.float32), report


def kernel_extent(kernel: np.ndarray) -> int:
    """The estimated shake's length, px: the larger side of the box around its weights."""
    ys, xs = np.nonzero(kernel)
    return int(max(np.ptp(ys), np.ptp(xs)) + 1) if len(ys) else 0
