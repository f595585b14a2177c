"""The builtin upscalers against bicubic, through the real daemon, on crops of photos held out from training.

tests/data/heldout/ holds 32 crops of 256 px, 8 at random positions (seed 1) in each of the four held-out photos
of training/photos.py (HELD_OUT), made by benchmarks/quality_upscale.py's `crops()`; no training script ever reads
those photos. Degradation: antialiased bicubic downscale (Pillow), the benchmark convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from retouch.client import Client
from retouch.pixels import frame_to_array, spec_for_array
from retouch.quality import psnr_y

DATA = Path(__file__).parent / "data"
CROPS = sorted((DATA / "heldout").glob("*.png"))

pytestmark = pytest.mark.slow


def upscale(client: Client, lr: np.ndarray, scale: int) -> np.ndarray:
    result = client.enhance("upscale", lr.tobytes(), spec_for_array(lr), params={"scale": scale})
    return frame_to_array(result.spec, result.pixels)


def bicubic(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC))


@pytest.mark.parametrize(("scale", "min_gain"), [(4, 1.0), (2, 1.0)])
def test_builtin_upscaler_beats_bicubic_on_held_out_photos(client: Client, scale: int, min_gain: float) -> None:
    assert len(CROPS) == 32
    gains = []
    for path in CROPS:
        hr_img = Image.open(path).convert("RGB")
        hr = np.asarray(hr_img)
        lr_img = hr_img.resize((hr_img.width // scale, hr_img.height // scale), Image.Resampling.BICUBIC)
        sr = upscale(client, np.asarray(lr_img), scale)
        assert sr.shape == hr.shape
        gains.append(psnr_y(sr, hr) - psnr_y(bicubic(lr_img, hr_img.size), hr))
    print(f"x{scale} PSNR-Y gain over bicubic: mean {np.mean(gains):.2f} dB, per crop {[round(g, 2) for g in gains]}")
    assert np.mean(gains) >= min_gain, gains
    assert np.median(gains) > 0, gains


def test_upscaler_is_sharper_than_bicubic_without_ringing(client: Client) -> None:
    """A dark/bright step edge: the result is steeper than bicubic and overshoots no more than bicubic does."""
    # a step edge at 7 degrees, area-sampled (8x8 per pixel): its values stay within 60..200, no overshoot of its own
    size, ss, angle = 96, 8, np.deg2rad(7)
    yy, xx = np.mgrid[0 : size * ss, 0 : size * ss] / ss - size / 2
    bright = (xx * np.cos(angle) + yy * np.sin(angle)) > 0
    level = np.where(bright, 200.0, 60.0).reshape(size, ss, size, ss).mean(axis=(1, 3))
    hr = np.repeat(np.rint(level)[:, :, None], 3, axis=2).astype(np.uint8)
    hr_img = Image.fromarray(hr)
    lr_img = hr_img.resize((hr_img.width // 4, hr_img.height // 4), Image.Resampling.BICUBIC)
    sr = upscale(client, np.asarray(lr_img), 4).astype(np.float32)
    bic = bicubic(lr_img, hr_img.size).astype(np.float32)
    inner = (slice(8, -8), slice(8, -8))

    def overshoot(x: np.ndarray) -> float:
        return float(max(x[inner].max() - 200, 60 - x[inner].min(), 0))

    def steepness(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x[inner].mean(axis=2), axis=1)).max())

    assert steepness(sr) > steepness(bic)
    assert overshoot(sr) <= overshoot(bic) + 4, (overshoot(sr), overshoot(bic))
