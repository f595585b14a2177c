"""Deconvolution with a known blur kernel: plug-and-play half-quadratic splitting with a noise-level-conditioned
denoiser as the image prior (the schedule of DPIR, Zhang et al. 2021), and the kernel cut from the picture itself
where it holds one blurred point of light (a star, a distant lamp, a glint: its trace is the camera's shake).

Each iteration solves the data term in closed form by FFT, then denoises at a falling noise level (49 -> the
image's own, on the 0..255 scale). The picture's outside is unknown: each data step fills it with the current
estimate blurred again, so the borders neither wrap round nor ring. Everything is in the image's own sRGB values, as
the blur of our benchmarks and training is.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from ..errors import BadRequest
from ..protocol import box_from_text

ITERATIONS = 8
LAMBDA = 0.23  # weight of the prior against the data term (DPIR's for deblurring)
START_SIGMA = 49 / 255  # the first denoising level
MIN_NOISE = 1 / 255  # floor of the data term's noise level (a clean image would otherwise ring)
TRACE_SIDES = (3, 99)  # px: the smallest and largest trace region
MIN_LIGHT = 0.05  # the trace's peak above its surroundings (0..1), below which there is no point of light
TRACE_FLOOR = 0.05  # share of the trace's peak below which a pixel is background
STANDS_OUT = 8.0  # the trace's peak against the variation of the region's border: a light, not texture

Box = tuple[int, int, int, int]


def parse_trace_box(value: str, shape: tuple[int, ...]) -> Box:
    """'x,y,w,h' (px of the image sent) -> (x, y, w, h); BadRequest naming what is wrong."""
    box = box_from_text(value)
    if box is None:
        raise BadRequest(f"parameter 'blur_trace' must be x,y,w,h in pixels (four integers), got {value!r}")
    x, y, w, h = box
    lo, hi = TRACE_SIDES
    if not (lo <= w <= hi and lo <= h <= hi):
        raise BadRequest(f"blur_trace region is {w}x{h} px: each side must be {lo}..{hi} px (a small box around one "
                         "blurred point of light)")
    if x < 0 or y < 0 or x + w > shape[1] or y + h > shape[0]:
        raise BadRequest(f"blur_trace region {x},{y},{w},{h} is not inside the {shape[1]}x{shape[0]} image")
    return x, y, w, h


def kernel_from_trace(color: np.ndarray, box: Box) -> np.ndarray:
    """The blur kernel that one blurred point of light inside `box` draws: the region's luminance above its border's
    median; pixels under TRACE_FLOOR of the peak or within three noise sigmas of the border, and light not connected
    to the peak, dropped; centred on its centre of mass (to the nearest pixel), summing to 1 (odd square, float64)."""
    x, y, w, h = box
    lum = color[y:y + h, x:x + w].astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    ring = np.concatenate([lum[0], lum[-1], lum[1:-1, 0], lum[1:-1, -1]])
    trace = np.clip(lum - np.median(ring), 0.0, None)
    spread = 1.4826 * np.median(np.abs(ring - np.median(ring)))  # how much the surroundings vary (robust sigma)
    if trace.max() < max(MIN_LIGHT, STANDS_OUT * spread):
        raise BadRequest(f"blur_trace region {x},{y},{w},{h} holds no point of light on a plain background: its "
                         f"brightest pixel is {trace.max() * 255:.1f}/255 above its border, whose pixels vary by "
                         f"{spread * 255:.1f}/255 (the light must stand {MIN_LIGHT * 255:.0f}/255 and {STANDS_OUT}x "
                         "that above it)")
    trace[trace < max(TRACE_FLOOR * trace.max(), 3.0 * spread)] = 0.0
    count, labels = cv2.connectedComponents((trace > 0).astype(np.uint8), connectivity=8)
    if count > 2:
        peak = labels[np.unravel_index(np.argmax(trace), trace.shape)]
        trace[labels != peak] = 0.0
    side = max(w, h) | 1
    yy, xx = np.mgrid[:h, :w]
    cy, cx = (trace * yy).sum() / trace.sum(), (trace * xx).sum() / trace.sum()
    # whole pixels only: a sub-pixel move would smear a thin trace; the result moves by under half a pixel instead
    oy, ox = round(side // 2 - cy), round(side // 2 - cx)
    kernel = np.zeros((side, side))
    ys, xs = np.nonzero(trace)
    inside = (ys + oy >= 0) & (ys + oy < side) & (xs + ox >= 0) & (xs + ox < side)
    kernel[ys[inside] + oy, xs[inside] + ox] = trace[ys[inside], xs[inside]]
    return kernel / kernel.sum()


def _otf(kernel: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """The kernel's transfer function on a `shape` grid (its centre moved to the origin)."""
    grid = torch.zeros(shape, dtype=torch.float32)
    grid[: kernel.shape[0], : kernel.shape[1]] = torch.from_numpy(kernel.astype(np.float32))
    grid = torch.roll(grid, (-(kernel.shape[0] // 2), -(kernel.shape[1] // 2)), dims=(0, 1))
    return torch.fft.rfft2(grid)


def deconvolve(color: np.ndarray, kernel: np.ndarray, noise: float,
               denoise: Callable[[np.ndarray, float], np.ndarray],
               on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
    """`color` (H x W x 3 float32 sRGB in [0, 1]) deconvolved by `kernel`; `noise` is its noise level (0..1 scale),
    `denoise(image, sigma)` the prior. `on_step(done, total)` after each iteration (it may raise to cancel)."""
    pad = max(2 * (kernel.shape[0] // 2), 8)
    padded = np.pad(color, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    h, w = padded.shape[:2]
    y = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1), np.float32))
    inside = torch.zeros((h, w), dtype=torch.bool)
    inside[pad:-pad, pad:-pad] = True
    otf = _otf(kernel, (h, w))
    power = otf.abs() ** 2
    noise = max(noise, MIN_NOISE)
    x = y.clone()
    sigmas = np.geomspace(START_SIGMA, min(noise, START_SIGMA), ITERATIONS)
    otf_conj = otf.conj()
    for i, sigma in enumerate(sigmas):
        rho = LAMBDA * noise**2 / sigma**2
        denominator = power + rho
        for c in range(x.shape[0]):  # a channel at a time: the transforms of a large picture are large
            fx = torch.fft.rfft2(x[c])
            filled = torch.where(inside, y[c], torch.fft.irfft2(otf * fx, s=(h, w)))
            x[c] = torch.fft.irfft2((otf_conj * torch.fft.rfft2(filled) + rho * fx) / denominator, s=(h, w))
        image = np.ascontiguousarray(x.clamp(0, 1).permute(1, 2, 0).numpy())
        x = torch.from_numpy(np.ascontiguousarray(denoise(image, float(sigma)).transpose(2, 0, 1), np.float32))
        if on_step is not None:
            on_step(i + 1, ITERATIONS)
    return np.ascontiguousarray(x.clamp(0, 1).permute(1, 2, 0).numpy()[pad:-pad, pad:-pad], np.float32)
