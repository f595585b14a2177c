"""The before/after pictures of the README, made by the project itself through the daemon.

Each picture is one crop of a held-out photo (never seen in training): the degraded input, Retouch's result (the
same request `retouch enhance` sends), and the original, side by side with the PSNR of each against the original.

    python benchmarks/examples.py            # writes benchmarks/examples/*.jpg
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "training"))
sys.path.insert(0, str(ROOT))

from degradations import blur, motion_kernel  # noqa: E402
from quality import held_out_images, psnr  # noqa: E402
from retouch.client import Client  # noqa: E402
from retouch.pixels import frame_to_array, linear_to_srgb, spec_for_array, srgb_to_linear  # noqa: E402

OUT = ROOT / "examples"
SIZE = 256


def run(client: Client, task: str, image: np.ndarray, **params: Any) -> np.ndarray:
    arr = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    result = client.enhance(task, arr.tobytes(), spec_for_array(arr), params=params)
    return frame_to_array(result.spec, result.pixels).astype(np.float32) / 255


def panel(name: str, images: list[tuple[str, np.ndarray]], original: np.ndarray) -> None:
    width = SIZE * len(images)
    sheet = Image.new("RGB", (width, SIZE + 22), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, img) in enumerate(images):
        sheet.paste(Image.fromarray(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)), (i * SIZE, 22))
        text = label if img is original else f"{label}  {psnr(img, original):.1f} dB"
        draw.text((i * SIZE + 4, 5), text, fill="black")
    OUT.mkdir(exist_ok=True)
    sheet.save(OUT / f"{name}.jpg", quality=92)
    print(OUT / f"{name}.jpg")


def main() -> None:
    photos = held_out_images()
    client = Client()
    rng = np.random.default_rng(3)

    clean = photos[3][400 : 400 + SIZE, 900 : 900 + SIZE]
    noisy = np.clip(clean + rng.normal(0, 25 / 255, clean.shape), 0, 1).astype(np.float32)
    panel("denoise", [("noise sigma 25", noisy), ("--task denoise", run(client, "denoise", noisy)),
                      ("original", clean)], clean)

    clean = photos[0][300 : 300 + SIZE, 600 : 600 + SIZE]
    import random

    kernel = motion_kernel(11, random.Random(5))
    blurred = blur(torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1)[None], kernel)[0]
    blurred = np.clip(blurred.permute(1, 2, 0).numpy() + rng.normal(0, 2 / 255, clean.shape), 0, 1)
    panel("sharpen", [("camera shake 11 px", blurred),
                      ("--task sharpen --blur motion", run(client, "sharpen", blurred, blur="motion")),
                      ("original", clean)], clean)

    clean = photos[2][200 : 200 + SIZE, 500 : 500 + SIZE]
    cast = linear_to_srgb(np.clip(srgb_to_linear(clean) * np.array([1.25, 1.0, 0.7]) * 0.5, 0, 1))
    panel("tone", [("warm cast, -1 EV", cast), ("--task tone", run(client, "tone", cast)),
                   ("original", clean)], clean)

    denoised = run(client, "denoise", noisy)
    panel("grain", [("denoised", denoised),
                    ("denoise --grain 0.4", run(client, "denoise", noisy, grain=0.4)),
                    ("denoise --strength 0.7", run(client, "denoise", noisy, strength=0.7))], clean)


if __name__ == "__main__":
    main()
