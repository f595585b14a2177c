"""Quality of the builtin upscalers on the held-out Debian photos, and what bf16 costs on this CPU.

Crops (seeded, textured or not, as they come) of the four held-out photos of training/photos.py are downscaled
with Pillow's antialiased bicubic; bicubic, Lanczos and our models (fp32 and bf16) bring them back. Prints PSNR-Y
(4 px border cropped) and the seconds per output megapixel of fp32 vs bf16, measured side by side.

    python benchmarks/quality_upscale.py [--crops 8] [--size 256]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))

from photos import ensure_photos, held_out_paths  # noqa: E402
from retouch.engine import Engine  # noqa: E402
from retouch.engine.registry import resolve  # noqa: E402
from retouch.quality import psnr_y  # noqa: E402


def crops(size: int, per_photo: int, seed: int) -> list[Image.Image]:
    rng = random.Random(seed)
    out = []
    for path in held_out_paths(ensure_photos()):
        img = Image.open(path).convert("RGB")
        for _ in range(per_photo):
            x, y = rng.randrange(img.width - size), rng.randrange(img.height - size)
            out.append(img.crop((x, y, x + size, y + size)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=8, help="crops per held-out photo")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    hr_crops = crops(args.size, args.crops, args.seed)
    print(f"{len(hr_crops)} crops of {args.size} px from {len(held_out_paths())} held-out photos")
    bench_upscale(hr_crops, args.size)


def bench_upscale(hr_crops: list[Image.Image], size: int) -> None:
    engines = {"fp32": Engine(device="cpu", precision="fp32"), "bf16": Engine(device="cpu", precision="bf16")}
    for scale in (2, 4):
        spec = resolve(f"retouch-upscale-x{scale}")
        scores: dict[str, list[float]] = {"bicubic": [], "lanczos": [], "fp32": [], "bf16": []}
        seconds = {"fp32": 0.0, "bf16": 0.0}
        out_mp = 0.0
        for hr_img in hr_crops:
            hr = np.asarray(hr_img)
            lr_img = hr_img.resize((size // scale,) * 2, Image.Resampling.BICUBIC)
            for name, method in (("bicubic", Image.Resampling.BICUBIC), ("lanczos", Image.Resampling.LANCZOS)):
                scores[name].append(psnr_y(np.asarray(lr_img.resize(hr_img.size, method)), hr))
            lr = np.asarray(lr_img).astype(np.float32) / 255.0
            out_mp += hr.shape[0] * hr.shape[1] / 1e6
            for name, engine in engines.items():
                model = engine.get(spec)
                t = time.perf_counter()
                sr, _ = engine.run(model, lr)
                seconds[name] += time.perf_counter() - t
                scores[name].append(psnr_y(np.clip(np.rint(sr * 255), 0, 255).astype(np.uint8), hr))
        base = np.mean(scores["bicubic"])
        print(f"x{scale}: " + ", ".join(f"{k} {np.mean(v):.2f} dB" for k, v in scores.items())
              + f" | gain over bicubic: fp32 {np.mean(scores['fp32']) - base:+.2f} dB, "
              f"bf16 {np.mean(scores['bf16']) - base:+.2f} dB | crops where fp32 < bicubic: "
              f"{sum(a < b for a, b in zip(scores['fp32'], scores['bicubic'], strict=True))}")
        print(f"x{scale}: CPU ({torch.get_num_threads()} threads) fp32 {seconds['fp32'] / out_mp:.3f} s/MP out, "
              f"bf16 {seconds['bf16'] / out_mp:.3f} s/MP out, bf16 speed-up {seconds['fp32'] / seconds['bf16']:.2f}x")


if __name__ == "__main__":
    main()
