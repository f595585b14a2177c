"""Synthetic damage of old photos, for training and measuring the restore task's detector and inpainter.

`damage(clean, rng)` turns a clean H x W x 3 float32 photo in [0, 1] into an old-looking one and returns the truth
as well: the *base* (the photo as it would be without damage: grayscale or sepia for some, soft for some, with film
grain for some: all of that is the photo, not damage) and the *mask* of damaged pixels. The damage, drawn
antialiased with OpenCV at several scales:

- scratches: long thin curves, often near-vertical as on film, bright or dark, 1-4 px wide, opacity fading along
  their length;
- dust and hairs: specks of 1-6 px and short curled fibres, bright or dark;
- blotches: irregular stains (brown, yellow or white emulsion loss) of 10-50 px with soft edges;
- water-stain rings: an irregular brownish ring band around a dried drop.

A pixel is damaged (mask 1) where the damage changed it by more than `VISIBLE` in some channel: faint damage that
does not show on its background is not asked to be found. The benchmark and the tests use the same function with
fixed seeds on held-out photos, so what we measure is what we train.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

VISIBLE = 0.06  # a pixel is damaged when some channel moved by more than this (15 of 255)
SEPIA = np.array([1.07, 0.95, 0.74], np.float32)  # multiplies a gray level: warm brown prints
STAIN_COLOURS = (np.array([0.55, 0.38, 0.18]), np.array([0.75, 0.62, 0.30]), np.array([0.93, 0.92, 0.88]),
                 np.array([0.30, 0.22, 0.14]))
SUB = 4  # sub-pixel bits of cv2's fixed-point drawing (coordinates x 16)


def _layer(shape: tuple[int, int]) -> np.ndarray:
    return np.zeros(shape, np.uint8)


def _pts(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << SUB)).astype(np.int32).reshape(-1, 1, 2)


def _curve(rng: np.random.Generator, start: np.ndarray, angle: float, length: float, wiggle: float,
           n: int = 24) -> np.ndarray:
    """A smooth random curve of about `length` px: the direction drifts by a random walk."""
    step = length / n
    turns = np.cumsum(rng.normal(0.0, wiggle, n)) + rng.uniform(-wiggle, wiggle) * np.arange(n)
    angles = angle + turns
    deltas = np.stack([np.cos(angles), np.sin(angles)], 1) * step
    return start + np.concatenate([np.zeros((1, 2)), np.cumsum(deltas, 0)])


def _scratch(rng: np.random.Generator, h: int, w: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (H x W float32, opacity included) and colour (3,) of one scratch."""
    cover = np.zeros((h, w), np.float32)
    vertical = rng.random() < 0.5
    angle = math.pi / 2 + rng.normal(0, 0.12) if vertical else rng.uniform(0, math.pi)
    length = rng.uniform(0.3, 1.6) * max(h, w)
    start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    start -= 0.5 * length * np.array([math.cos(angle), math.sin(angle)])
    curve = _curve(rng, start, angle, length, rng.uniform(0.005, 0.06))
    width = max(1, int(round(rng.uniform(0.6, 3.2) * scale)))
    opacity = rng.uniform(0.5, 1.0)
    phase, waves = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 3)
    for i in range(len(curve) - 1):  # each segment its own strength: scratches fade in and out
        fade = 0.5 + 0.5 * math.sin(phase + waves * 2 * math.pi * i / len(curve))
        strength = opacity * (0.35 + 0.65 * fade)
        seg = _layer((h, w))
        cv2.polylines(seg, [_pts(curve[i : i + 2])], False, 255, width, cv2.LINE_AA, SUB)
        cover = np.maximum(cover, seg.astype(np.float32) / 255 * strength)
    bright = rng.random() < 0.6
    colour = np.full(3, rng.uniform(0.85, 1.0) if bright else rng.uniform(0.0, 0.15))
    return cover, colour


def _dust(rng: np.random.Generator, h: int, w: int, scale: float, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Specks and hairs, bright ones and dark ones drawn on two layers."""
    layers = []
    for bright in (True, False):
        seg = _layer((h, w))
        for _ in range(count // 2 + int(rng.integers(0, 2))):
            c = np.array([rng.uniform(0, w), rng.uniform(0, h)])
            if rng.random() < 0.75:  # a speck
                axes = (max(0.5, rng.uniform(0.4, 2.5) * scale), max(0.5, rng.uniform(0.4, 2.5) * scale))
                cv2.ellipse(seg, (_pts(c)[0, 0, 0], _pts(c)[0, 0, 1]),
                            (int(axes[0] * (1 << SUB)), int(axes[1] * (1 << SUB))), rng.uniform(0, 180), 0, 360,
                            int(rng.uniform(150, 255)), -1, cv2.LINE_AA, SUB)
            else:  # a hair: a short curled fibre
                curve = _curve(rng, c, rng.uniform(0, 2 * math.pi), rng.uniform(5, 18) * scale, 0.25, 12)
                cv2.polylines(seg, [_pts(curve)], False, int(rng.uniform(150, 255)), 1, cv2.LINE_AA, SUB)
        colour = np.full(3, rng.uniform(0.88, 1.0) if bright else rng.uniform(0.0, 0.12))
        layers.append((seg.astype(np.float32) / 255 * rng.uniform(0.7, 1.0), colour))
    return layers


def _blob(rng: np.random.Generator, h: int, w: int, radius: float) -> np.ndarray:
    """An irregular soft-edged blob (H x W float32 in [0, 1]): a disc whose rim wanders."""
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    rim = np.ones_like(theta)
    for k in (2, 3, 5):
        rim += rng.uniform(0, 0.35 / k * 2) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    dist = np.hypot(yy - cy, xx - cx) / (radius * rim)
    edge = rng.uniform(0.08, 0.3)
    return np.clip((1 - dist) / edge, 0, 1).astype(np.float32)


def _blotch(rng: np.random.Generator, h: int, w: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    cover = _blob(rng, h, w, rng.uniform(5, 25) * scale) * rng.uniform(0.45, 0.95)
    colour = STAIN_COLOURS[int(rng.integers(len(STAIN_COLOURS)))] * rng.uniform(0.9, 1.1)
    return cover, np.clip(colour, 0, 1)


def _ring(rng: np.random.Generator, h: int, w: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """A water-stain ring: the rim of a dried drop, darker at its outer edge."""
    outer = _blob(rng, h, w, rng.uniform(12, 45) * scale)
    band = rng.uniform(0.1, 0.3)
    cover = np.clip(outer / band, 0, 1) * np.clip((1 - outer) / band * 2, 0, 1)  # 0 inside, 0 outside, 1 on the rim
    colour = STAIN_COLOURS[int(rng.integers(2))] * rng.uniform(0.8, 1.0)
    return cover.astype(np.float32) * rng.uniform(0.4, 0.8), np.clip(colour, 0, 1)


def natural_strokes(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo with thin structures that belong to the scene drawn in: tufts of grass stalks, twigs, sunlit plant
    hairs. Each tuft is 8-50 short, roughly parallel, slightly curved strokes in the scene's own colour there, made
    brighter (sunlit) or darker (in shade), fading along their length and as soft as a photo's detail. Drawn
    before `damage`, they are part of the undamaged photo: the detector learns that a thin line is damage only when
    it lies on the scene (white or black, long, alone), not when it is of it."""
    h, w = photo.shape[:2]
    out = photo.astype(np.float32).copy()
    scale = rng.uniform(0.6, 1.6)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        spread = rng.uniform(0.1, 0.5) * max(h, w)
        upright = rng.random() < 0.7
        heading = (-math.pi / 2 + rng.normal(0, 0.25)) if upright else rng.uniform(0, math.pi)
        sunlit = rng.random() < 0.65
        for _ in range(int(rng.integers(8, 51))):
            start = np.array([cx + rng.normal(0, spread / 2), cy + rng.normal(0, spread / 2)])
            x, y = int(np.clip(start[0], 0, w - 1)), int(np.clip(start[1], 0, h - 1))
            local = out[max(0, y - 2):y + 3, max(0, x - 2):x + 3].reshape(-1, 3).mean(0)
            factor = rng.uniform(1.25, 2.0) if sunlit else rng.uniform(0.25, 0.7)
            colour = np.clip(local * factor + (rng.uniform(0.05, 0.2) if sunlit else 0.0), 0, 1)
            if np.ptp(colour) < 0.08 and not 0.15 < colour.mean() < 0.8:
                continue  # near-white or near-black and colourless: what a scratch or a hair looks like
            curve = _curve(rng, start, heading + rng.normal(0, 0.2), rng.uniform(6, 45) * scale,
                           rng.uniform(0.01, 0.08), n=8)
            width = 1 if rng.random() < 0.7 else 2
            cover = np.zeros((h, w), np.float32)
            opacity = rng.uniform(0.5, 1.0)
            for i in range(len(curve) - 1):  # fading toward the tip, as a stalk thins and turns from the light
                seg = _layer((h, w))
                cv2.polylines(seg, [_pts(curve[i : i + 2])], False, 255, width, cv2.LINE_AA, SUB)
                cover = np.maximum(cover, seg.astype(np.float32) / 255 * opacity * (1 - 0.6 * i / len(curve)))
            cover = cv2.GaussianBlur(cover, (0, 0), rng.uniform(0.3, 0.7))[..., None]
            out = out * (1 - cover) + colour.astype(np.float32) * cover
    return np.clip(out, 0, 1).astype(np.float32)


def age(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What is the photo, not damage: grayscale (40 %) or sepia (15 %), softness (30 %), film grain (50 %)."""
    base = clean.astype(np.float32)
    r = rng.random()
    if r < 0.55:
        gray = base @ np.array([0.299, 0.587, 0.114], np.float32)
        base = np.repeat(gray[..., None], 3, 2) if r < 0.4 else np.clip(gray[..., None] * SEPIA, 0, 1)
    if rng.random() < 0.3:
        base = cv2.GaussianBlur(base, (0, 0), rng.uniform(0.4, 1.0))
    if rng.random() < 0.5:
        grain = rng.normal(0, rng.uniform(0.005, 0.03), base.shape[:2]).astype(np.float32)
        base = base + cv2.GaussianBlur(grain, (0, 0), 0.6)[..., None]
    return np.clip(base, 0, 1).astype(np.float32)


def damage(clean: np.ndarray, rng: np.random.Generator, amount: float = 1.0) -> tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]:
    """(damaged, base, mask): the damaged photo, the photo without damage, and the damaged pixels (H x W bool).

    `amount` scales how many of each kind are drawn (0: none, only ageing)."""
    h, w = clean.shape[:2]
    base = age(clean, rng)
    scale = rng.uniform(0.6, 1.8)
    area = h * w / 256**2
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(rng.poisson(2.0 * amount)):
        layers.append(_scratch(rng, h, w, scale))
    dust = int(rng.poisson(14 * amount * area))
    if dust:
        layers += _dust(rng, h, w, scale, dust)
    for _ in range(rng.poisson(0.8 * amount * area)):
        layers.append(_blotch(rng, h, w, scale))
    if rng.random() < 0.25 * amount:
        layers.append(_ring(rng, h, w, scale))
    if base.std() < 1e-6 or np.allclose(base, base[..., :1]):  # a gray photo gets gray damage
        layers = [(cover, np.full(3, colour.mean())) for cover, colour in layers]
    damaged = base.copy()
    for cover, colour in layers:
        a = cover[..., None]
        damaged = damaged * (1 - a) + colour.astype(np.float32) * a
    mask = np.abs(damaged - base).max(2) > VISIBLE
    return damaged.astype(np.float32), base, mask


def damaged_set(photos: list[np.ndarray], seed: int, amount: float = 1.0) -> list[tuple[np.ndarray, np.ndarray,
                                                                                         np.ndarray]]:
    """The fixed evaluation set the benchmark and tests use: each photo damaged once with `seed`."""
    rng = np.random.default_rng(seed)
    return [damage(p, rng, amount) for p in photos]
