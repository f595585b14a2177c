"""Known pictures and selections for the editor e2e tests, in the layouts the editors use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from shaken_pictures import with_a_lamp
from text_pictures import degrade, fonts, paint, text_mask

DATA = Path(__file__).resolve().parent.parent / "data" / "heldout"
NP = {"u8": np.dtype("u1"), "u16": np.dtype("<u2"), "f16": np.dtype("<f2"), "f32": np.dtype("<f4")}


def photo(width: int, height: int, dtype: str, order: str = "RGBA", transfer: str = "srgb") -> np.ndarray:
    """A held-out photo crop as (height, width, 4) in `dtype`, channel `order` and `transfer`, opaque."""
    rgb = np.asarray(Image.open(DATA / "path-1.png").convert("RGB"))[40:40 + height, 60:60 + width]
    rgb = rgb.astype(np.float64) / 255
    if transfer == "linear":
        rgb = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    rgba = np.dstack([rgb, np.ones((height, width))])
    if order == "BGRA":
        rgba = rgba[:, :, [2, 1, 0, 3]]
    if dtype in ("u8", "u16"):
        return np.round(rgba * (255 if dtype == "u8" else 65535)).astype(NP[dtype])
    return rgba.astype(NP[dtype])


# camera shake with a lamp in a dark area, for a 120 x 90 picture whose selection lies right of it: the lamp is
# inside the selection's 32 px of context; LAMP_TRACE is the box around its trace (x, y, w, h, canvas pixels)
LAMP_DARK, LAMP, LAMP_TRACE = (15, 50, 60, 90), (34, 72), (19, 57, 30, 30)


def shaken_lamp_photo(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(the held-out photo crop with a dark area and a one-pixel lamp, that picture shaken), RGB u8."""
    return with_a_lamp(photo(width, height, "u8", "RGBA")[:, :, :3], LAMP_DARK, LAMP, seed=5)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the non-zero pixels."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def close_to_scaled(mask: np.ndarray, small: np.ndarray, scale: int) -> None:
    """An upscaled mask agrees with the selection it came from: same values well inside and well outside."""
    h, w = small.shape
    sampled = mask.reshape(h * scale, w * scale)[::scale, ::scale].astype(int)
    assert np.abs(sampled - small).mean() < 6
    padded = np.pad(small, 1, mode="edge")
    shifts = [padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]
    inside, outside = np.min(shifts, axis=0), np.max(shifts, axis=0)
    assert (sampled[inside == 255] == 255).all() and (sampled[outside == 0] == 0).all()


def sign_flag_readings(flags: list[dict]) -> list[tuple[str, str]]:
    """Each text flag's last two characters (before, after): [("88", "8B")] for `small_sign` (its "SO" reads "50",
    "SO" or "S0" with a pixel of box, in either image)."""
    return [(f["before"][-2:], f["after"][-2:]) for f in flags]


def small_sign() -> np.ndarray:
    """A 64 x 24 sign saying "SO 8B" (DejaVu Sans Bold, 5 px capitals), 8-bit RGBA, opaque: so small that its
    bicubic x4 enlargement reads "SO 88" (or "50 88") and the builtin x4 upscaler's "SO 8B", which the text guard
    flags."""
    image = np.full((96, 256, 3), (0.92, 0.9, 0.86), np.float32)
    font = next((f for f in fonts() if f.name == "DejaVuSans-Bold.ttf"), fonts()[0])
    paint(image, text_mask("SO 8B", font, 20), 16, 30, (0.08, 0.08, 0.1))
    rgb = np.rint(degrade(image, 4, 2.2) * 255).astype(np.uint8)
    return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
