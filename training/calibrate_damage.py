"""Pick the damage detector's threshold (what `--sensitivity 0.5` means) on a validation set of the *training*
photos, never the held-out ones: crops damaged by `damage.py` with a seed training never draws, the detector run
through the engine as the task runs it, pooled IoU against the true mask for each threshold. Beside it, the share
of pixels flagged on the same crops undamaged, as they are and given grass-like strokes of their own
(`natural_strokes`): what the detector takes for damage in a clean photo and in thin lines that belong to the scene.

    python training/calibrate_damage.py [--weights PATH] [--crops 48]
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

import numpy as np
import torch
from damage import damaged_set, natural_strokes
from photos import PHOTO_SETS, ensure_photos, train_paths
from retouch.engine import Engine
from retouch.engine.registry import ModelSpec, resolve
from train_upscaler import load_pool

SEED = 1000  # the training script seeds its damage from 0 + step: far below this
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="detector weights (default: the builtin retouch-damage)")
    parser.add_argument("--crops", type=int, default=48)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--photo-set", choices=sorted(PHOTO_SETS), default="v2",
                        help="whose photos the validation crops come from (v1: those of the detectors before v2)")
    parser.add_argument("--ensemble", action="store_true",
                        help="run the detector as the task's `ensemble` does: averaged over 8 flips and turns")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    rng = random.Random(SEED)
    pool = load_pool(train_paths(ensure_photos(), args.photo_set), factors=(2, 3))
    crops = []
    for _ in range(args.crops):
        src = rng.choice(pool)
        y, x = rng.randrange(src.shape[1] - args.size), rng.randrange(src.shape[2] - args.size)
        crops.append(src[:, y : y + args.size, x : x + args.size].permute(1, 2, 0).numpy().astype(np.float32) / 255)
    cases = damaged_set(crops, seed=SEED)
    spec = resolve("retouch-damage")
    if args.weights:
        spec = ModelSpec(args.weights.stem, args.weights, False, condition=spec.condition)
    engine = Engine(device="cpu")
    model = engine.get(spec)

    def damage_map(image: np.ndarray) -> np.ndarray:
        return engine.run(model, image, ensemble=args.ensemble)[0][:, :, 0]

    maps = [damage_map(damaged) for damaged, _, _ in cases]
    # the same crops undamaged, with grass-like strokes of their own (damage.natural_strokes): all flags are false
    nrng = np.random.default_rng(SEED + 1)
    decoy_maps = [damage_map(natural_strokes(c, nrng)) for c in crops]
    clean_maps = [damage_map(c) for c in crops]
    print(f"{len(cases)} validation crops of the training photos, {engine.device_name}, {model.dtype}"
          f"{', self-ensemble' if args.ensemble else ''}")
    for cut in THRESHOLDS:
        found = [m > cut for m in maps]
        inter = sum(int((f & t).sum()) for f, (_, _, t) in zip(found, cases, strict=True))
        union = sum(int((f | t).sum()) for f, (_, _, t) in zip(found, cases, strict=True))
        false = float(np.mean([(m > cut).mean() for m in decoy_maps]))
        clean = float(np.mean([(m > cut).mean() for m in clean_maps]))
        print(f"  threshold {cut:.2f}: pooled IoU {inter / max(union, 1):.3f}; pixels flagged on the crops "
              f"undamaged {clean * 100:.2f} %, with grass-like strokes {false * 100:.2f} %")


if __name__ == "__main__":
    main()
