"""Generated pictures with text at known places, for the text guard's tests and benchmark (benchmarks/textguard.py).

A scene is a high-resolution picture (flat colour or a held-out photo) with a few rendered strings (digits, words,
plate-like strings made of easily confused characters) in several fonts, sizes and polarities; `degrade` blurs and
area-downscales it so that small strings become ambiguous; an upscaler then brings it back to the scene's size, so
the rendered boxes are in result coordinates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
PHOTOS = sorted((Path(__file__).parent / "data" / "heldout").glob("*.png"))
WORDS = ("street", "Hotel", "EXIT", "open", "Station", "Bakery", "PARKING", "menu", "Garden", "north", "SALE",
         "Zone", "cafe", "Museum", "LOBBY", "gate", "Bus", "STOP", "Pharmacy", "river")
CONFUSABLE = "8B0OD1Il7SZ52G6"
LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


@dataclass
class Region:
    text: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in the scene's pixels: the font's box of the string
    # the rendered pixels' own box, one pixel larger on each side (the font's box also holds the glyphs' side
    # bearings, 1-10 px left and right that nothing in the picture shows; top and bottom they are the same)
    ink: tuple[int, int, int, int] | None = None


@dataclass
class Scene:
    image: np.ndarray  # H x W x 3 float32 sRGB in [0, 1]
    regions: list[Region]


def fonts() -> list[Path]:
    """Latin TrueType fonts found on this machine (DejaVu on most Linux systems), sorted for reproducibility."""
    found = sorted({p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*.ttf")})
    latin = [p for p in found if "Math" not in p.name and "Emoji" not in p.name]
    if not latin:
        raise RuntimeError("no TrueType font found under " + ", ".join(str(d) for d in FONT_DIRS))
    return latin


def random_string(rng: random.Random) -> str:
    kind = rng.choice(("digits", "word", "plate", "confusable"))
    if kind == "digits":
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 6)))
    if kind == "word":
        word = rng.choice(WORDS)
        return rng.choice((word, word.upper(), word.lower()))
    if kind == "plate":
        return (rng.choice(LETTERS) + rng.choice(LETTERS) + " " + "".join(rng.choice("0123456789") for _ in range(3))
                + " " + rng.choice(LETTERS) + rng.choice(LETTERS))
    head = "".join(rng.choice(CONFUSABLE) for _ in range(rng.randint(2, 4)))
    return head + rng.choice(("-", "", " ")) + "".join(rng.choice(CONFUSABLE) for _ in range(rng.randint(2, 3)))


def text_mask(text: str, font: Path, height: int) -> np.ndarray:
    """The string's coverage (float32 in [0, 1]), tightly cropped, its capitals about `height` px tall."""
    face = ImageFont.truetype(str(font), size=max(6, round(height * 1.35)))
    left, top, right, bottom = face.getbbox(text)
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), text, font=face, fill=255)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def painted_box(mask: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    """The box of a text mask's inked pixels painted at (x, y), one pixel larger on each side (exclusive end)."""
    cols, rows = np.flatnonzero(mask.max(axis=0) > 0), np.flatnonzero(mask.max(axis=1) > 0)
    return x + int(cols[0]) - 1, y + int(rows[0]) - 1, x + int(cols[-1]) + 2, y + int(rows[-1]) + 2


def last_glyph_start(mask: np.ndarray) -> int:
    """The mask's column where its last glyph starts (the last gap between inked columns ends there)."""
    inked = mask.max(axis=0) > 0.5
    return int(np.flatnonzero(inked[1:] & ~inked[:-1])[-1]) + 1


def paint(image: np.ndarray, mask: np.ndarray, x: int, y: int, color: tuple[float, float, float]) -> None:
    h, w = mask.shape
    patch = image[y:y + h, x:x + w]
    patch[:] = patch * (1 - mask[..., None]) + np.asarray(color, np.float32) * mask[..., None]


def background(rng: random.Random, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """Flat colour or a held-out photo (tiled if need be); also whether it is a photo."""
    h, w = size
    if PHOTOS and rng.random() < 0.5:
        photo = np.asarray(Image.open(rng.choice(PHOTOS)).convert("RGB"), dtype=np.float32) / 255.0
        if rng.random() < 0.5:
            photo = photo[:, ::-1]
        reps = (-(-h // photo.shape[0]), -(-w // photo.shape[1]), 1)
        return np.ascontiguousarray(np.tile(photo, reps)[:h, :w]), True
    level = rng.choice((rng.uniform(0.75, 0.95), rng.uniform(0.05, 0.25)))
    tint = np.asarray([rng.uniform(-0.05, 0.05) for _ in range(3)], np.float32)
    return np.clip(np.full((h, w, 3), level, np.float32) + tint, 0, 1), False


def make_scene(rng: random.Random, size: tuple[int, int] = (256, 256), count: int = 3,
               heights: tuple[int, int] = (10, 36)) -> Scene:
    """`count` strings at random, non-overlapping places (fewer when they do not fit)."""
    image, photo = background(rng, size)
    faces = fonts()
    regions: list[Region] = []
    for _ in range(count * 10):
        if len(regions) == count:
            break
        text = random_string(rng)
        mask = text_mask(text, rng.choice(faces), rng.randint(*heights))
        mh, mw = mask.shape
        margin = 6
        if mw + 2 * margin > size[1] or mh + 2 * margin > size[0]:
            continue
        x, y = rng.randint(margin, size[1] - mw - margin), rng.randint(margin, size[0] - mh - margin)
        box = (x, y, x + mw, y + mh)
        if any(overlaps(box, r.box, margin) for r in regions):
            continue
        local = image[y:y + mh, x:x + mw].mean()
        dark = local > 0.5
        if photo:  # a plate behind the text, as signs have, half of the time
            if rng.random() < 0.5:
                level = rng.uniform(0.8, 0.95) if rng.random() < 0.5 else rng.uniform(0.05, 0.2)
                image[y - 3:y + mh + 3, x - 3:x + mw + 3] = level
                dark = level > 0.5
        shade = rng.uniform(0.0, 0.15) if dark else rng.uniform(0.85, 1.0)
        paint(image, mask, x, y, (shade, shade, shade))
        regions.append(Region(text, box, painted_box(mask, x, y)))
    return Scene(np.ascontiguousarray(image, np.float32), regions)


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    return not (a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1])


def degrade(image: np.ndarray, scale: int, blur: float) -> np.ndarray:
    """Gaussian blur (sigma in high-resolution px; 0 = none), then area-downscale by `scale`."""
    h, w = image.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"picture {w}x{h} is not a multiple of the scale {scale}")
    soft = cv2.GaussianBlur(image, (0, 0), blur) if blur > 0 else image
    return np.ascontiguousarray(cv2.resize(soft, (w // scale, h // scale), interpolation=cv2.INTER_AREA), np.float32)


def bicubic(image: np.ndarray, scale: int) -> np.ndarray:
    h, w = image.shape[:2]
    up = cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.clip(up, 0, 1), np.float32)
