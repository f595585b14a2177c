"""Train the colorize task's builtin net: the lightness of a photo in, its colours out (a DRUNet spandrel loads).

Input: the photo's neutral version (every pixel the gray of its own CIELAB L*, as RGB) plus a conditioning channel
that carries how colourful the answer should be: the target's mean CIELAB chroma / 100. A net trained on lightness
alone hedges between possible colours and paints everything brownish-gray (the L1 median); told the chroma to aim
for, it commits, and `vividness` steers it at run time (1 = `TYPICAL_CHROMA`, the median of the training crops).
Output: RGB, of which only a* and b* are used (the task puts the input's L* back). Loss: L1 on a* and b* (CIELAB,
the same formulas as `retouch/ops/lab.py`, in torch).

Data: random 96 px crops of the training photos at 1/4, 1/6 and 1/8 of their size (and some at 1/3), and of
scikit-image's colour photographs, flips, 90-degree turns: colour is a coarse thing that depends on what the thing
is, so the net sees whole scenes at low resolution, and the task runs it on the image brought down to at most
`WORK_SIDE` px, then brings a* and b* back up under the full-resolution L*. The loop (`loop.py`): Adam, warm-up,
cosine learning rate over a wall-clock budget, bf16 autocast where the CPU has it, checkpoints every two minutes.

    python training/train_colorize.py --minutes 45 --threads 2 --size 96 --out retouch-colorize.safetensors
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from loop import add_common_args, export_weights, load_weights, train, wait_for_start
from photos import add_photo_args, ensure_photos, skimage_paths, train_paths
from retouch.tasks.colorize import TYPICAL_CHROMA
from spandrel.architectures.DRUNet import DRUNet
from train_restorer import sample_crops
from train_upscaler import load_pool

COLOUR_SKIMAGE = ("astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "rocket.jpg")
WHITE = (0.95047, 1.0, 1.08883)
RGB_TO_XYZ = ((0.4124564, 0.3575761, 0.1804375), (0.2126729, 0.7151522, 0.0721750), (0.0193339, 0.1191920, 0.9503041))
EPS, KAPPA = 216 / 24389, 24389 / 27


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W sRGB -> L*, a*, b* (differentiable; the formulas of retouch/ops/lab.py)."""
    x = rgb.clamp(0, 1)
    lin = torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    m = torch.tensor(RGB_TO_XYZ, dtype=x.dtype, device=x.device)
    xyz = torch.einsum("ij,njhw->nihw", m, lin) / torch.tensor(WHITE, dtype=x.dtype, device=x.device)[:, None, None]
    f = torch.where(xyz > EPS, xyz.clamp_min(EPS) ** (1 / 3), (KAPPA * xyz + 16) / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def neutral(lab: torch.Tensor) -> torch.Tensor:
    """The gray sRGB image of each pixel's L* (N x 3 x H x W)."""
    fy = (lab[:, :1] + 16) / 116
    y = torch.where(fy**3 > EPS, fy**3, (116 * fy - 16) / KAPPA)
    srgb = torch.where(y <= 0.0031308, 12.92 * y, 1.055 * y.clamp_min(0) ** (1 / 2.4) - 0.055)
    return srgb.clamp(0, 1).expand(-1, 3, -1, -1)


def make_batch(pools, size: int, batch: int, rng: random.Random, close_share: float = 0.25
               ) -> tuple[torch.Tensor, torch.Tensor]:
    colour = sample_crops(pools, batch, size, rng, texture_share=close_share)
    lab = rgb_to_lab(colour)
    chroma = lab[:, 1:].pow(2).sum(1).sqrt().mean((1, 2))  # per crop
    cond = (chroma / 100)[:, None, None, None].expand(-1, 1, size, size)
    return torch.cat([neutral(lab), cond], 1), lab[:, 1:]


def ab_loss(out: torch.Tensor, target_ab: torch.Tensor) -> torch.Tensor:
    return (rgb_to_lab(out[:, :3])[:, 1:] - target_ab).abs().mean() / 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, minutes=45.0, batch=16, lr=5e-4)
    parser.add_argument("--channels", type=lambda v: [int(c) for c in v.split(",")], default=[32, 64, 128, 256])
    parser.add_argument("--depth", type=int, default=2, help="residual blocks per level (spandrel needs 2 or more)")
    add_photo_args(parser)
    parser.add_argument("--run-dir", type=Path, default=Path(__file__).parent / "runs" / "colorize")
    parser.add_argument("--close-factors", type=lambda v: tuple(int(f) for f in v.split(",")), default=(3,),
                        help="reductions of the photos for close-ups (a detail or a selection colorized on its "
                             "own), e.g. 2,3; whole scenes are cut at 1/4, 1/6, 1/8")
    parser.add_argument("--close-share", type=float, default=0.25,
                        help="share of crops that are close-ups (half of it) or scikit-image's colour photos")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    photos = train_paths(ensure_photos(args.photos), args.photo_set)
    colour = [p for p in skimage_paths(args.skimage_dir) if p.name in COLOUR_SKIMAGE]
    pools = tuple(load_pool(paths, factors=factors)
                  for paths, factors in ((photos, (4, 6, 8)), (photos, args.close_factors), (colour, (1,))))
    device = torch.device(args.device)
    model = DRUNet(in_nc=4, out_nc=3, nc=args.channels, nb=args.depth, act_mode="R", downsample_mode="strideconv",
                   upsample_mode="convtranspose")
    if args.init is not None:
        load_weights(model, args.init)
    model = model.to(device).to(memory_format=torch.channels_last)
    wait_for_start(args.start_after)

    def on_resume(step: int) -> None:
        rng.seed(args.seed + step)

    def export(step: int, elapsed: float, use_bf16: bool) -> None:
        export_weights(model, args.out, {
            "architecture": "drunet", "task": "colorize", "steps": str(step), "minutes": f"{elapsed / 60:.1f}",
            "channels": ",".join(map(str, args.channels)), "depth": str(args.depth), "batch": str(args.batch),
            "size": str(args.size), "bf16": str(use_bf16), "device": device.type, "lr": str(args.lr),
            "condition": f"target mean CIELAB chroma / 100 (typical {TYPICAL_CHROMA})",
            "photo_set": args.photo_set, "init": args.init.name if args.init else "", "ema": str(args.ema),
            "close_factors": ",".join(map(str, args.close_factors)), "close_share": str(args.close_share)})

    step, elapsed, use_bf16 = train(
        model, lambda: make_batch(pools, args.size, args.batch, rng, args.close_share), lr=args.lr,
        minutes=args.minutes,
        run_dir=args.run_dir, device=device, warmup=200, ema=args.ema, on_resume=on_resume, on_checkpoint=export,
        loss_fn=ab_loss)
    export(step, elapsed, use_bf16)
    print(f"saved {args.out} after {step} steps, {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
