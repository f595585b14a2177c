"""The before/after pictures of the README, made by the project itself through the daemon.

Each picture is the centre 256 px window of a held-out photo (never seen in training; no picking of flattering
crops), or for the face task the 256 px around the face of scikit-image's astronaut, or for the text flag a scene of
the text guard benchmark: the degraded input, Retouch's result (the same request `retouch enhance` sends), and the
original, side by side with the PSNR of each against the original.

    python benchmarks/examples.py            # writes benchmarks/examples/*.jpg
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "training"))
sys.path.insert(0, str(ROOT))

from damage import damage  # noqa: E402
from degradations import blur, gaussian_kernel, motion_kernel  # noqa: E402
from quality import held_out_images, psnr  # noqa: E402
from retouch.client import Client  # noqa: E402
from retouch.pixels import frame_to_array, linear_to_srgb, spec_for_array, srgb_to_linear  # noqa: E402

OUT = ROOT / "examples"
SIZE = 256


def run(client: Client, task: str, image: np.ndarray, **params: Any) -> np.ndarray:
    arr = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    result = client.enhance(task, arr.tobytes(), spec_for_array(arr), params=params)
    return frame_to_array(result.spec, result.pixels).astype(np.float32) / 255


def panel(name: str, images: list[tuple[str, np.ndarray]], original: np.ndarray,
          unscored: tuple[str, ...] = ()) -> None:
    h, w = original.shape[:2]  # every picture of a panel has the original's size (256 px, or the text scene's 320)
    sheet = Image.new("RGB", (w * len(images), h + 22), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, img) in enumerate(images):
        sheet.paste(Image.fromarray(np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)), (i * w, 22))
        scored = img is not original and label not in unscored
        text = f"{label}  {psnr(img, original):.1f} dB" if scored else label  # PSNR against the original
        draw.text((i * w + 4, 5), text, fill="black")
    OUT.mkdir(exist_ok=True)
    sheet.save(OUT / f"{name}.jpg", quality=92)
    print(OUT / f"{name}.jpg")


def centre(photo: np.ndarray) -> np.ndarray:
    """The 256 px window at the photo's centre (no picking of flattering crops)."""
    y, x = (photo.shape[0] - SIZE) // 2, (photo.shape[1] - SIZE) // 2
    return np.ascontiguousarray(photo[y : y + SIZE, x : x + SIZE])


def main() -> None:
    dune, ladybird, evening, path = (centre(p) for p in held_out_images())
    client = Client()
    rng = np.random.default_rng(3)

    noisy = np.clip(ladybird + rng.normal(0, 25 / 255, ladybird.shape), 0, 1).astype(np.float32)
    denoised = run(client, "denoise", noisy)
    panel("denoise", [("noise sigma 25", noisy), ("--task denoise", denoised), ("original", ladybird)], ladybird)
    panel("grain", [("--task denoise", denoised), ("--grain 0.4", run(client, "denoise", noisy, grain=0.4)),
                    ("--strength 0.6", run(client, "denoise", noisy, strength=0.6))], ladybird)

    soft = blur(torch.from_numpy(path).permute(2, 0, 1)[None], gaussian_kernel(1.6))[0].permute(1, 2, 0).numpy()
    soft = np.clip(soft + rng.normal(0, 2 / 255, soft.shape), 0, 1).astype(np.float32)
    shaken = blur(torch.from_numpy(dune).permute(2, 0, 1)[None], motion_kernel(9, random.Random(5)))[0]
    shaken = np.clip(shaken.permute(1, 2, 0).numpy() + rng.normal(0, 2 / 255, dune.shape), 0, 1).astype(np.float32)
    panel("sharpen", [("defocus (Gaussian 1.6)", soft), ("--task sharpen", run(client, "sharpen", soft)),
                      ("original", path)], path)
    panel("sharpen-motion", [("camera shake 9 px", shaken),
                             ("--task sharpen --blur motion", run(client, "sharpen", shaken, blur="motion")),
                             ("original", dune)], dune)
    lamp = path.copy()  # a dark corner with one small lamp: the point of light --blur-trace reads the shake from
    lamp[206:256, 0:50] = 0.08
    lamp[232, 25] = 1.0
    kernel = motion_kernel(11, random.Random(7))
    shook = blur(torch.from_numpy(lamp).permute(2, 0, 1)[None], kernel)[0].permute(1, 2, 0).numpy()
    shook = np.clip(shook + np.random.default_rng(11).normal(0, 2 / 255, shook.shape), 0, 1).astype(np.float32)
    panel("sharpen-trace", [("camera shake 11 px, a lamp", shook), ("--task sharpen", run(client, "sharpen", shook)),
                            ("--blur-trace 7,214,36,36", run(client, "sharpen", shook, blur_trace="7,214,36,36")),
                            ("original", lamp)], lamp)

    cast = linear_to_srgb(np.clip(srgb_to_linear(evening) * np.array([1.25, 1.0, 0.7]) * 0.5, 0, 1))
    panel("tone", [("warm cast, -1 EV", cast), ("--task tone", run(client, "tone", cast)), ("original", evening)],
          evening)

    old, aged, truth = damage(dune, np.random.default_rng(12), amount=1.5)  # aged: the photo as grey/sepia, undamaged
    arr = np.rint(old * 255).astype(np.uint8)
    result = client.enhance("restore", arr.tobytes(), spec_for_array(arr), params={"review": True})
    restored = frame_to_array(result.spec, result.pixels).astype(np.float32) / 255
    assert result.review is not None
    found = np.frombuffer(result.review, np.uint8).reshape(SIZE, SIZE).astype(np.float32) / 255
    panel("restore", [("synthetic damage", old), ("--task restore", restored),
                      ("--save-mask (repaired pixels)", np.repeat(found[:, :, None], 3, 2)), ("undamaged", aged)],
          aged, unscored=("--save-mask (repaired pixels)",))

    from retouch.ops.lab import gray_of, lightness

    bw = gray_of(lightness(ladybird))
    panel("colorize", [("lightness only", bw), ("--task colorize", run(client, "colorize", bw)),
                       ("--vividness 1.5", run(client, "colorize", bw, vividness=1.5)), ("original", ladybird)],
          ladybird)

    from skimage import data

    portrait = data.astronaut().astype(np.float32) / 255  # public domain; not a held-out photo: no faces in those
    worn = cv2.GaussianBlur(portrait, (0, 0), 1.6) + rng.normal(0, 8 / 255, portrait.shape)
    restored = run(client, "face", worn.astype(np.float32))
    window = np.s_[0:SIZE, 96:96 + SIZE]  # the 256 px around her face
    face = np.ascontiguousarray(portrait[window])
    panel("face", [("blur 1.6 + noise 8", worn[window]), ("--task face", restored[window]), ("original", face)], face)

    review_map(client, evening)
    text_flag(client)


def review_map(client: Client, photo: np.ndarray) -> None:
    """The invention map of a x4 upscale: the held-out window area-downscaled 4x, then `--scale 4 --review`."""
    small = cv2.resize(photo, (SIZE // 4, SIZE // 4), interpolation=cv2.INTER_AREA)
    arr = np.rint(np.clip(small, 0, 1) * 255).astype(np.uint8)
    result = client.enhance("upscale", arr.tobytes(), spec_for_array(arr), params={"scale": 4, "review": True})
    up = frame_to_array(result.spec, result.pixels).astype(np.float32) / 255
    assert result.review is not None
    found = np.frombuffer(result.review, np.uint8).reshape(SIZE, SIZE).astype(np.float32) / 255
    bicubic = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    panel("review", [("bicubic x4", bicubic), ("--scale 4", up), ("--review (white: not in the input)",
                                                                 np.repeat(found[:, :, None], 3, 2)),
                     ("original", photo)], photo, unscored=("--review (white: not in the input)",))


def text_flag(client: Client) -> None:
    """A flagged text change: scene 213 of the text guard benchmark's seed-5 split (a plate "SP 531 UW" 5 px tall
    in the input, x4), chosen because the upscaler changed a reading there; `--text-guard` draws its flags."""
    from textguard import scenes

    scene, scale, _, source = list(scenes(5, 214))[-1]
    arr = np.rint(np.clip(source, 0, 1) * 255).astype(np.uint8)
    params: dict[str, Any] = {"scale": scale, "text_guard": True, "face_strength": 1.0}
    result = client.enhance("upscale", arr.tobytes(), spec_for_array(arr), params=params)
    up = frame_to_array(result.spec, result.pixels).astype(np.float32) / 255
    flags = [f for f in result.info.get("flags", []) if f["kind"] == "text"]
    assert flags, "the guard flagged nothing on the example scene"
    kept = run(client, "upscale", source, **dict(params, protect_text=True))
    bicubic = cv2.resize(arr, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    before = f"bicubic x{scale}: reads " + " / ".join(f'"{f["before"]}"' for f in flags)
    after = "--text-guard: the result reads " + " / ".join(f'"{f["after"]}"' for f in flags)
    panel("text-flag", [(before, boxed(bicubic, flags)), (after, boxed(up, flags)), ("--protect-text", kept),
                        ("original", scene.image)], scene.image, unscored=(before, after))


def boxed(image: np.ndarray, flags: list[dict[str, Any]]) -> np.ndarray:
    """`image` with each flag's box drawn in red, 2 px."""
    out = image.copy()
    for flag in flags:
        x0, y0, x1, y1 = flag["box"]
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), (1.0, 0.1, 0.1), 2)
    return out


if __name__ == "__main__":
    main()
