"""Compare sharpener weights on validation crops of the *training* photos (`validation.py`), never the held-out
ones: blurred the two ways `benchmarks/quality.py` blurs its held-out crops (Gaussian sigma 1.6; camera shake 5-15
px; both plus noise sigma 2), with seeds training never draws, each model run blind (`--blur auto`) through the
engine as the task runs it (bf16 where the CPU has it). Prints the mean PSNR gain over the blurred input per kind of
blur and kind of crop, so a fine-tune can be kept or dropped before the held-out figures are measured once.

    python training/validate_sharpen.py /tmp/rt/sharpen-ft.safetensors [more.safetensors ...] [--crops 24]
"""

from __future__ import annotations

import random

import numpy as np
import torch
from degradations import blur, gaussian_kernel, motion_kernel
from retouch.tasks.sharpen import BLUR_HINTS
from validation import LINES, psnr, start, validation_crops

SEED = 2000  # the training script seeds its crops and kernels from small numbers: far below this


def blurred_pairs(crops: list[torch.Tensor], seed: int) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """{"defocus": [(clean, blurred)], "motion": [...]}: each crop blurred both ways, plus noise sigma 2."""
    rng, gen = random.Random(seed), np.random.default_rng(seed)
    cases: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for kind in ("defocus", "motion"):
        pairs = []
        for crop in crops:
            k = gaussian_kernel(1.6) if kind == "defocus" else motion_kernel(rng.uniform(5, 15), rng)
            b = blur(crop[None], k)[0].permute(1, 2, 0).numpy()
            b = np.clip(b + gen.normal(0, 2 / 255, b.shape), 0, 1).astype(np.float32)
            pairs.append((crop.permute(1, 2, 0).numpy().astype(np.float32), b))
        cases[kind] = pairs
    return cases


def main() -> None:
    args, specs, engine = start(__doc__, "sharpener", "retouch-sharpen", "blind")
    for factors, detailed, label in LINES:
        crops = validation_crops(args.photos, args.photo_set, args.crops, args.size, factors, detailed, SEED)
        for kind, pairs in blurred_pairs(crops, SEED + sum(factors) + detailed).items():
            print(f"  {label}, {kind}: blurred input {np.mean([psnr(b, c) for c, b in pairs]):.2f} dB")
            for spec in specs:
                model = engine.get(spec)
                gains = [psnr(engine.run(model, b, condition=BLUR_HINTS["auto"])[0], c) - psnr(b, c)
                         for c, b in pairs]
                print(f"    {spec.name:28} {model.dtype}: gain {np.mean(gains):+.2f} dB (worst crop {min(gains):+.2f})")


if __name__ == "__main__":
    main()
