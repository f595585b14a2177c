"""A probe, not a product feature: estimate the camera shake's kernel with a small learned refiner, deconvolve with
it, and average with the sharpener's result (MODELS.md, "Estimated shake, averaged"). CPU-runnable; a GPU trains
the refiner further in minutes.

Per blurred crop (training photos only, `validation.py`):
- the least-squares kernel that blurs the blind sharpener's output into the crop (luminance gradients, non-negative,
  21 x 21, normal equations by FFT). It has the shake's direction and shape but is short and patchy;
- the autocorrelation of the crop's gradients (about the kernel's own autocorrelation on a natural image).
`ShakeRefiner` (6 dilated convolutions, 47k weights, softmax over 21 x 21) maps both to the kernel (L1 loss).
The evaluation deconvolves each validation crop with the refined kernel (`ops/deconvolve.py`, our denoiser as the
prior), averages that with the sharpener's result, and gates the average: it is used only while the deconvolution
strays from the sharpener's result at most TRUST times as far as that went from the crop.

    python training/probe_shake_kernel.py --samples 6000 --minutes 22 --out refiner.pt   # samples + training
    python training/probe_shake_kernel.py --evaluate refiner.pt                           # validation table
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from degradations import blur, motion_kernel, splat_path
from photos import DEFAULT_ROOT, ensure_photos
from retouch.engine import Engine
from retouch.engine.registry import resolve
from retouch.ops.deconvolve import deconvolve
from retouch.ops.noise import estimate_sigma
from retouch.tasks.sharpen import BLUR_HINTS
from torch import nn
from validation import psnr, validation_crops

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from shaken_pictures import shake_kernel  # noqa: E402  (the S-shaped shake of the tests: not a shape training draws)

KERNEL_SIZE = 21  # px: shakes up to about 17 px
REACH = 20  # px: the autocorrelation's radius (2 x the kernel's)
RIDGE = 1e-3  # Tikhonov weight of the least-squares kernel, relative to the mean gradient energy
STEPS = 300  # projected-gradient steps towards the non-negative least-squares kernel
FLOOR = 0.05  # share of the kernel's peak below which a weight is dropped

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


TRUST = 1.5  # the gate (see the docstring), chosen on these validation crops
SAMPLE_SIZE, SAMPLE_SEED, EVAL_SEED = 192, 7000, 2000


class Tools:
    """The blind sharpener and the deconvolution, through a CPU engine (bf16 where the CPU has it)."""

    def __init__(self) -> None:
        self.engine = Engine(device="cpu")
        self.sharpener = self.engine.get(resolve("retouch-sharpen"))
        self.denoise_spec = resolve("retouch-denoise")
        self.denoiser = self.engine.get(self.denoise_spec)

    def sharpen(self, blurred: np.ndarray) -> np.ndarray:
        return self.engine.run(self.sharpener, blurred, condition=BLUR_HINTS["auto"])[0]

    def deconvolve(self, blurred: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        def denoise(x: np.ndarray, sigma: float) -> np.ndarray:
            return self.engine.run(self.denoiser, x, condition=sigma * self.denoise_spec.condition_scale)[0]

        return deconvolve(blurred, kernel, estimate_sigma(blurred), denoise)


def varied_shake(length: float, rng: random.Random) -> np.ndarray:
    """A wider family than `degradations.motion_kernel`: the path bends in 1-3 pieces, each with its own curvature
    (S shapes, hooks), more jitter, and uneven dwell; about `length` px, on the 21 x 21 grid, centred."""
    steps = 64
    direction = rng.uniform(0, 2 * np.pi)
    cuts = sorted(rng.sample(range(8, steps - 8), rng.randint(0, 2)))
    bends = [rng.uniform(-4.0, 4.0) / steps for _ in range(len(cuts) + 1)]
    jitter = rng.uniform(0.0, 1.2)
    points, position = [], np.zeros(2)
    for i in range(steps):
        points.append(position.copy())
        direction += bends[sum(i >= c for c in cuts)] + rng.gauss(0, jitter) / np.sqrt(steps)
        position = position + np.array([np.cos(direction), np.sin(direction)])
    path = np.array(points)
    path = (path - path.mean(0)) * (length / (np.linalg.norm(np.ptp(path, axis=0)) or 1.0))
    return splat_path(path, np.array([rng.uniform(0.2, 1.0) for _ in range(steps)]), KERNEL_SIZE)


def refiner_input(blurred: np.ndarray, sharpened: np.ndarray) -> np.ndarray:
    """The refiner's two 41 x 41 channels for one crop."""
    pad = REACH - KERNEL_SIZE // 2
    rough = np.pad(centred(least_squares_kernel(blurred, sharpened), KERNEL_SIZE), pad)
    return np.stack([rough / max(rough.max(), 1e-8), gradient_autocorrelation(blurred)]).astype(np.float32)


def shaken(crop: torch.Tensor, kernel: np.ndarray, sigma: float, gen: np.random.Generator) -> np.ndarray:
    out = blur(crop[None], kernel)[0].permute(1, 2, 0).numpy()
    return np.clip(out + gen.normal(0, sigma, out.shape), 0, 1).astype(np.float32)


def make_samples(count: int, tools: Tools, varied: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N x 2 x 41 x 41) and centred true kernels (N x 21 x 21): half scenes at 1/2-1/3, half the most
    detailed crops at 1/2; shakes of 4-16 px (`varied`: half of them from `varied_shake`); noise sigma 1-3 of
    255."""
    rng, gen = random.Random(SAMPLE_SEED), np.random.default_rng(SAMPLE_SEED)
    photos = ensure_photos(DEFAULT_ROOT)
    crops = (validation_crops(photos, "v3", count // 2, SAMPLE_SIZE, (2, 3), False, SAMPLE_SEED) +
             validation_crops(photos, "v3", count - count // 2, SAMPLE_SIZE, (2,), True, SAMPLE_SEED + 1))
    inputs, kernels = [], []
    for i, crop in enumerate(crops):
        length = rng.uniform(4, 16)
        kernel = varied_shake(length, rng) if varied and i % 2 else motion_kernel(length, rng)
        blurred = shaken(crop, kernel, rng.choice([1.0, 2.0, 2.0, 3.0]) / 255, gen)
        inputs.append(refiner_input(blurred, tools.sharpen(blurred)))
        kernels.append(centred(kernel, KERNEL_SIZE).astype(np.float32))
        if i % 500 == 0:
            print(f"  sample {i}/{count}", flush=True)
    return np.stack(inputs), np.stack(kernels)


def train(inputs: np.ndarray, kernels: np.ndarray, minutes: float, out: Path) -> None:
    """Adam at 1e-3, batch 48, L1 between kernels, each sample turned and flipped at random; the first 300 samples
    (a fifth of fewer) held out for the printed validation error."""
    x, k = torch.from_numpy(inputs), torch.from_numpy(kernels)
    held = min(300, len(x) // 5)
    x_val, k_val, x, k = x[:held], k[:held], x[held:], k[held:]
    net = ShakeRefiner()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    start, step = time.time(), 0
    while time.time() - start < minutes * 60:
        batch = torch.randint(len(x), (48,))
        turns, flip = random.randrange(4), random.random() < 0.5
        xb, kb = torch.rot90(x[batch], turns, (2, 3)), torch.rot90(k[batch], turns, (1, 2))
        if flip:
            xb, kb = xb.flip(3), kb.flip(2)
        loss = (net(xb) - kb).abs().sum((1, 2)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0 or time.time() - start >= minutes * 60:
            with torch.no_grad():
                val = float((net(x_val) - k_val).abs().sum((1, 2)).mean())
            print(f"  step {step} ({time.time() - start:.0f} s): train L1 {loss.item():.3f}, validation L1 {val:.3f}",
                  flush=True)
            torch.save(net.state_dict(), out)
    torch.save(net.state_dict(), out)


def kernel_error(a: np.ndarray, b: np.ndarray) -> float:
    """L1 distance (0..2) between two kernels, both centred on a 21 x 21 grid."""
    return float(np.abs(centred(a, KERNEL_SIZE) - centred(b, KERNEL_SIZE)).sum())


def evaluate(weights: Path, tools: Tools, count: int) -> None:
    net = ShakeRefiner()
    net.load_state_dict(torch.load(weights))
    net.eval()
    lines = (("most detailed crops at 1/2", (2,), True), ("crops at 1/2 and 1/3", (2, 3), False))
    print("mean gain over the blurred crop, dB: sharpener | deconvolution | average | gated average (used) "
          "| kernel L1 error")
    for label, factors, detailed in lines:
        crops = validation_crops(ensure_photos(DEFAULT_ROOT), "v3", count, 256, factors, detailed, EVAL_SEED)
        rng, gen = random.Random(EVAL_SEED + 77), np.random.default_rng(EVAL_SEED + 77)
        for shape in ("random shakes 5-15 px", "the tests' S-shaped shake"):
            rows = []
            for crop in crops:
                kernel = motion_kernel(rng.uniform(5, 15), rng) if shape.startswith("random") else shake_kernel()
                blurred, clean = shaken(crop, kernel, 2 / 255, gen), crop.permute(1, 2, 0).numpy()
                sharpened = tools.sharpen(blurred)
                with torch.no_grad():
                    refined = net(torch.from_numpy(refiner_input(blurred, sharpened))[None])[0].double().numpy()
                estimate = cleaned(refined)
                deconvolved = tools.deconvolve(blurred, estimate)
                strays = np.sqrt(np.mean((deconvolved - sharpened) ** 2)) / np.sqrt(np.mean((sharpened - blurred) ** 2))
                average = 0.5 * (sharpened + deconvolved)
                base = psnr(blurred, clean)
                used = average if strays <= TRUST else sharpened
                rows.append([psnr(sharpened, clean) - base, psnr(deconvolved, clean) - base,
                             psnr(average, clean) - base, psnr(used, clean) - base, strays <= TRUST,
                             kernel_error(estimate, kernel)])
            r = np.array(rows, np.float64)
            print(f"  {label}, {shape}: {r[:, 0].mean():+.2f} | {r[:, 1].mean():+.2f} | {r[:, 2].mean():+.2f} | "
                  f"{r[:, 3].mean():+.2f} ({int(r[:, 4].sum())}/{len(r)}, worst crop against the sharpener "
                  f"{(r[:, 3] - r[:, 0]).min():+.2f}) | {r[:, 5].mean():.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=6000)
    parser.add_argument("--minutes", type=float, default=22.0)
    parser.add_argument("--out", type=Path, default=Path("refiner.pt"), help="the refiner's weights (torch)")
    parser.add_argument("--cache", type=Path, default=None, help="keep the samples in this pickle file")
    parser.add_argument("--evaluate", type=Path, default=None, help="refiner weights to evaluate instead")
    parser.add_argument("--crops", type=int, default=8, help="validation crops per line (--evaluate)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--varied", action="store_true", help="half the training shakes from varied_shake")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tools = Tools()
    if args.evaluate is not None:
        evaluate(args.evaluate, tools, args.crops)
        return
    if args.cache is not None and args.cache.exists():
        with args.cache.open("rb") as f:
            inputs, kernels = pickle.load(f)  # noqa: S301 (a file this script wrote)
    else:
        inputs, kernels = make_samples(args.samples, tools, args.varied)
        if args.cache is not None:
            with args.cache.open("wb") as f:
                pickle.dump((inputs, kernels), f)
    train(inputs, kernels, args.minutes, args.out)


if __name__ == "__main__":
    main()
