"""Pre-processing: automatic exposure and white balance, in linear light.

Exposure: read from the luminance histogram. When the highlights have room (the 99.5th percentile of luminance is
below the white point 0.92), the image is brightened until they reach it, but never past 1 EV above the gain that
brings the log-average luminance to middle grey (0.18), so a dark scene stays a dark scene. When the highlights
are already at the top, the image is only darkened, and only when its log-average sits more than 0.5 EV above
middle grey. Limited to +-3 EV. A soft shoulder above 80 % compresses what lands near the top, so no value clips
that was not clipped before (the brightest possible value still maps to exactly 1).

White balance: the illuminant is estimated with a Minkowski norm over pixels that are neither clipped nor nearly
black (shades of grey, p = 6: between grey-world, p = 1, and white-patch, p = infinity); each channel is divided by
it, keeping the luminance, through the same highlight shoulder. `benchmarks/quality.py` measures the angular error
of every estimator on held-out photos with synthetic colour casts; shades of grey won there.
"""

from __future__ import annotations

import numpy as np

from ..pixels import linear_to_srgb, srgb_to_linear

MIDDLE_GREY = 0.18
WHITE_POINT = 0.92
MAX_EV = 3.0
MAX_WB_ANGLE = 20.0  # degrees: a stronger "cast" is more likely the scene's own colour (a dune, a sunset)
SHOULDER = 0.8
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
WB_METHODS = ("gray_world", "shades_of_gray", "white_patch", "gray_edge")


def _shoulder(v: np.ndarray, top: float) -> np.ndarray:
    """Identity below SHOULDER; above it, a rational curve with slope 1 at SHOULDER that maps `top` to 1."""
    if top <= 1.0:
        return v
    k = SHOULDER
    a = (top - k) / (1 - k)
    t = np.clip((v - k) / (top - k), 0.0, None)
    curved = k + (1 - k) * (a * t) / (1 + (a - 1) * t)
    return np.where(v > k, curved, v).astype(np.float32)


def apply_gains(color: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Multiply linear channels of the sRGB-encoded `color` by `gains`, highlights shouldered, back to sRGB."""
    lin = srgb_to_linear(color) * gains.astype(np.float32)
    out = np.empty_like(lin)
    for c in range(3):
        out[:, :, c] = _shoulder(lin[:, :, c], float(gains[c]))
    return linear_to_srgb(np.clip(out, 0.0, 1.0))


def exposure_ev(color: np.ndarray) -> float:
    """The exposure correction in EV (see the module's docstring)."""
    y = srgb_to_linear(color) @ LUMA
    key = float(np.exp(np.mean(np.log(np.clip(y, 1e-4, None)))))
    ev_key = np.log2(MIDDLE_GREY / key)
    ev_white = np.log2(WHITE_POINT / max(float(np.percentile(y, 99.5)), 1e-4))
    ev = max(0.0, min(ev_white, ev_key + 1.0)) if ev_white > 0 else min(0.0, ev_key + 0.5)
    return float(np.clip(ev, -MAX_EV, MAX_EV))


def _usable(lin: np.ndarray) -> np.ndarray:
    mx = lin.max(axis=2)
    return (mx < 0.98) & (mx > 0.01)


def estimate_illuminant(color: np.ndarray, method: str = "shades_of_gray") -> np.ndarray:
    """The scene illuminant's colour (unit-norm linear RGB) estimated from the sRGB-encoded `color`."""
    lin = srgb_to_linear(color)
    if method == "gray_edge":
        import cv2

        smooth = cv2.GaussianBlur(lin, (0, 0), 1.0)
        gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0)
        gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
        px = np.sqrt(gx**2 + gy**2)[_usable(lin)]
        p = 6.0
    else:
        px = lin[_usable(lin)]
        p = {"gray_world": 1.0, "shades_of_gray": 6.0, "white_patch": 0.0}[method]
    if len(px) < 64:
        return np.ones(3) / np.sqrt(3)
    px = px.astype(np.float64)
    est = np.percentile(px, 99, axis=0) if p == 0.0 else np.mean(px**p, axis=0) ** (1 / p)
    est = np.maximum(est, 1e-6)
    return _limit_angle(est / np.linalg.norm(est), MAX_WB_ANGLE)


def _limit_angle(illum: np.ndarray, max_deg: float) -> np.ndarray:
    """Move `illum` towards neutral until it is at most `max_deg` away from it (unit vectors, great circle)."""
    neutral = np.ones(3) / np.sqrt(3)
    angle = np.arccos(np.clip(illum @ neutral, -1.0, 1.0))
    limit = np.radians(max_deg)
    if angle <= limit:
        return illum
    t = limit / angle
    out = (np.sin((1 - t) * angle) * neutral + np.sin(t * angle) * illum) / np.sin(angle)
    return out / np.linalg.norm(out)


def white_balance_gains(color: np.ndarray, method: str = "shades_of_gray") -> np.ndarray:
    """Per-channel gains that make the estimated illuminant neutral while keeping its luminance."""
    illum = estimate_illuminant(color, method)
    gains = 1.0 / illum
    return gains * float(illum @ LUMA) / float((illum * gains) @ LUMA)


def angular_error(a: np.ndarray, b: np.ndarray) -> float:
    """Angle in degrees between two RGB vectors (the standard colour-constancy error)."""
    cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def auto_tone(color: np.ndarray, exposure: bool, white_balance: bool) -> tuple[np.ndarray, dict[str, object]]:
    """Apply the requested corrections; returns the image and what was done (for the job's info)."""
    gains = np.ones(3)
    info: dict[str, object] = {}
    if white_balance:
        wb = white_balance_gains(color)
        gains = gains * wb
        info["white_balance_gains"] = [round(float(g), 4) for g in wb]
    if exposure:
        balanced = apply_gains(color, gains) if white_balance else color
        ev = exposure_ev(balanced)
        gains = gains * 2.0**ev
        info["exposure_ev"] = round(ev, 3)
    if not info:
        return color, info
    return apply_gains(color, gains), info
