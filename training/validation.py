"""Validation crops of the *training* photos, never the held-out ones, for choosing between weights before the
held-out figures (`benchmarks/quality.py`) are measured once: what `validate_sharpen.py` and `validate_inpaint.py`
share."""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import numpy as np
import torch
from photos import add_photo_args, ensure_photos, train_paths
from retouch.engine import Engine
from retouch.engine.registry import ModelSpec, resolve
from retouch.quality import psnr as full_psnr
from train_restorer import fine_detail
from train_upscaler import load_pool

BORDER = 10  # px left out of PSNR, as in benchmarks/quality.py
# the photos reduced as training reduces most of them; the most detailed crops at 1/2 (dense texture, where the
# held-out photos are hardest); and at full size
LINES = (((2, 3), False, "photos at 1/2 and 1/3"), ((2,), True, "photos at 1/2, their most detailed crops"),
         ((1,), False, "photos at full size"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR of `a` (clipped to [0, 1]) against `b`, BORDER px left out, as benchmarks/quality.py measures."""
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    return full_psnr(np.clip(a[inner], 0, 1), b[inner], peak=1.0)


def validation_crops(photos: Path, photo_set: str, count: int, size: int, factors: tuple[int, ...], detailed: bool,
                     seed: int) -> list[torch.Tensor]:
    """`count` crops (3 x size x size, float in [0, 1]) of the training photos (of `photo_set`, unpacked under
    `photos`) reduced by `factors`, not flat; `detailed`: the most detailed quarter of 4x as many."""
    rng = random.Random(seed + sum(factors) + detailed)
    pool = [p for p in load_pool(train_paths(ensure_photos(photos), photo_set), factors=factors)
            if min(p.shape[1:]) > size]  # a photo reduced below the crop size has no crop to give
    crops: list[torch.Tensor] = []
    while len(crops) < (4 if detailed else 1) * count:
        src = rng.choice(pool)
        y, x = rng.randrange(src.shape[1] - size), rng.randrange(src.shape[2] - size)
        crop = src[:, y : y + size, x : x + size].float() / 255
        if float(crop.std()) > 8 / 255:  # flat sky says nothing
            crops.append(crop)
    if detailed:
        crops = [crops[i] for i in torch.argsort(fine_detail(torch.stack(crops)), descending=True)[:count]]
    return crops


def validation_args(doc: str, what: str) -> argparse.Namespace:
    """The options every validate script takes (candidate weights, crops per line, crop size, the photos), parsed;
    torch's threads set from OMP_NUM_THREADS (default 2)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", type=Path, nargs="*", help=f"{what} weights (the builtin one is always first)")
    parser.add_argument("--crops", type=int, default=24, help="crops per line")
    parser.add_argument("--size", type=int, default=256)
    add_photo_args(parser)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    return args


def start(doc: str, what: str, builtin_name: str, how: str = "") -> tuple[argparse.Namespace, list[ModelSpec], Engine]:
    """A validate script's options parsed, its candidates (the builtin model first) and a CPU engine; prints the
    header line (crops per line, crop size, photo set, `how` the models run, the engine's device)."""
    args = validation_args(doc, what)
    engine = Engine(device="cpu")
    print(f"{args.crops} validation crops of {args.size} px per line, photo set {args.photo_set}, "
          f"{how + ', ' if how else ''}{engine.device_name}")
    return args, candidates(builtin_name, args.weights), engine


def candidates(builtin_name: str, weights: list[Path]) -> list[ModelSpec]:
    """The builtin model, then each weights file as a model of the same conditioning."""
    builtin = resolve(builtin_name)
    return [builtin] + [ModelSpec(w.stem, w, False, condition=builtin.condition) for w in weights]
