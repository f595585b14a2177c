"""Train Retouch's builtin upscaler (SRVGGNetCompact, loadable by spandrel) on Debian-package photos.

Recipe: random crops of the training photos (and of their half-size copies, for scale variety), flips and
rotations; the low-resolution input is an antialiased bicubic downscale for 80 % of the samples, and for the other
20 % a mix of mild blur, area/bilinear downscale, light noise and JPEG, so the model stays sane on real inputs.
L1 loss, Adam, cosine learning rate over a fixed time budget, bf16 autocast on CPUs that have it.
It checkpoints every few minutes and resumes, so a stop loses minutes, not the run.

    python training/train_upscaler.py --scale 4 --minutes 50 --out daemon/retouch/models/retouch-upscale-x4.safetensors
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from loop import add_ema_arg, train
from photos import add_photo_args, ensure_photos, train_paths
from PIL import Image
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact


def load_pool(paths: list[Path], factors: tuple[int, ...] = (1, 2)) -> list[torch.Tensor]:
    """Each photo at 1/factor of its size for each factor, as uint8 CHW tensors."""
    pool = []
    for path in paths:
        img = Image.open(path).convert("RGB")
        for factor in factors:
            size = (img.width // factor, img.height // factor)
            im = img if factor == 1 else img.resize(size, Image.Resampling.LANCZOS)
            pool.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous())
    return pool


def random_crop(pool: list[torch.Tensor], size: int, rng: random.Random) -> torch.Tensor:
    weights = [t.shape[1] * t.shape[2] for t in pool]
    for _ in range(10):
        src = rng.choices(pool, weights=weights)[0]
        y = rng.randrange(0, src.shape[1] - size)
        x = rng.randrange(0, src.shape[2] - size)
        crop = src[:, y : y + size, x : x + size]
        # Flat sky teaches nothing: mostly skip crops without structure.
        if crop.float().std() > 8 or rng.random() < 0.2:
            break
    k = rng.randrange(4)
    crop = torch.rot90(crop, k, (1, 2))
    if rng.random() < 0.5:
        crop = crop.flip(2)
    return crop.float() / 255.0


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(sigma * 3)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def degrade(hr: torch.Tensor, scale: int, rng: random.Random) -> torch.Tensor:
    """hr: 1xCxHxW in [0, 1] -> low-resolution 1xCx(H/scale)x(W/scale)."""
    size = (hr.shape[2] // scale, hr.shape[3] // scale)
    if rng.random() < 0.8:
        return F.interpolate(hr, size=size, mode="bicubic", antialias=True).clamp(0, 1)
    x = hr
    if rng.random() < 0.5:
        x = gaussian_blur(x, rng.uniform(0.3, 1.2))
    mode = rng.choice(["area", "bilinear", "bicubic"])
    x = F.interpolate(x, size=size, mode=mode, antialias=mode != "area") if mode != "area" else F.interpolate(
        x, size=size, mode="area"
    )
    if rng.random() < 0.5:
        x = x + torch.randn_like(x) * rng.uniform(0.0, 3.0) / 255.0
    x = x.clamp(0, 1)
    if rng.random() < 0.5:
        arr = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        ok, enc = cv2.imencode(".jpg", arr[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, rng.randint(75, 95)])
        if ok:
            dec = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
            x = torch.from_numpy(dec).permute(2, 0, 1)[None].float() / 255.0
    return x


def make_batch(pool, scale: int, lr_size: int, batch: int, rng: random.Random):
    hrs, lrs = [], []
    for _ in range(batch):
        hr = random_crop(pool, lr_size * scale, rng)[None]
        hrs.append(hr)
        lrs.append(degrade(hr, scale, rng))
    return torch.cat(lrs), torch.cat(hrs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, choices=(2, 4), required=True)
    parser.add_argument("--minutes", type=float, default=50.0, help="training time budget (wall clock)")
    parser.add_argument("--num-feat", type=int, default=48)
    parser.add_argument("--num-conv", type=int, default=16)
    parser.add_argument("--lr-size", type=int, default=48, help="low-resolution crop size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_photo_args(parser)
    parser.add_argument("--run-dir", type=Path, default=None, help="checkpoints and log (default training/runs/xN)")
    parser.add_argument("--out", type=Path, required=True, help="final weights (.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    add_ema_arg(parser)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    run_dir = args.run_dir or Path(__file__).parent / "runs" / f"x{args.scale}"

    pool = load_pool(train_paths(ensure_photos(args.photos), args.photo_set))
    device = torch.device(args.device)
    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=args.num_feat, num_conv=args.num_conv, upscale=args.scale)
    model = model.to(device).to(memory_format=torch.channels_last)
    step, elapsed, use_bf16 = train(
        model, lambda: make_batch(pool, args.scale, args.lr_size, args.batch, rng), lr=args.lr,
        minutes=args.minutes, run_dir=run_dir, device=device, ema=args.ema)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"architecture": "Compact", "scale": str(args.scale), "steps": str(step), "minutes": f"{elapsed / 60:.1f}",
            "num_feat": str(args.num_feat), "num_conv": str(args.num_conv), "batch": str(args.batch),
            "lr_size": str(args.lr_size), "bf16": str(use_bf16), "device": device.type, "photo_set": args.photo_set,
            "ema": str(args.ema)}
    save_file(state, str(args.out), metadata=meta)
    print(f"saved {args.out} after {step} steps, {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
