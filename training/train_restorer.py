"""Train Retouch's builtin denoiser (DRUNet) or deblurrer (Compact), each with one conditioning input channel.

`--arch drunet` (denoise): a U-Net of residual blocks, loadable by spandrel, whose 4th input channel is the noise
level (sigma on the 0..1 scale) as in the original DRUNet, so `--noise-level` steers it and `auto` feeds an
estimate. `--arch compact` (sharpen): SRVGGNetCompact at scale 1, every convolution at full resolution (a U-Net
spends its capacity at low resolution, where no sharpening happens: our DRUNet sharpener plateaued at +0.5-1 dB),
4 channels in and out, started from our x2 upscaler's weights (`--init-from`); its 4th input is a blur hint:
0 = unknown, 0.25 = defocus, 0.5 = camera shake, the true hint for half the samples and 0 for the others.

Recipe: random crops of the training photos at 1/2 and 1/3 of their size (downscaling leaves clean, sharp
targets) and, for `--texture-share` of the samples, crops of the same photos at full size (half of those) and of
scikit-image's bundled photographs and textures (the other half): the wallpapers alone are smooth, and a net
trained on them only over-smooths fine texture. Then flips and rotations, the synthetic degradations of
`degradations.py`, L1 loss, Adam, a short warm-up and a cosine learning rate over a fixed time budget, bf16 autocast
on CPUs that have it. It checkpoints every two minutes and resumes, so a stop loses minutes, not the run.

    python training/train_restorer.py --task denoise --minutes 122 --threads 1 --out retouch-denoise.safetensors
    python training/train_restorer.py --task sharpen --arch compact --width 48 --depth 12 --size 64 --lr 4e-4 \
        --init-from daemon/retouch/models/retouch-upscale-x2.safetensors --minutes 66 --out retouch-sharpen.safetensors
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from degradations import BLUR_HINTS, random_blur, random_noise
from loop import train
from photos import DEFAULT_ROOT, ensure_photos, skimage_paths, train_paths
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.DRUNet import DRUNet
from train_upscaler import load_pool, random_crop


def make_batch(pools, task: str, size: int, batch: int, rng: random.Random,
               texture_share: float) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = [], []
    base, full_size, bundled = pools
    for _ in range(batch):
        r = rng.random()
        pool = full_size if r < texture_share / 2 else bundled if r < texture_share else base
        clean = random_crop(pool, size, rng)[None]
        if task == "denoise":
            degraded, sigma = random_noise(clean, rng)
            # a little slack around the true level, as an estimate would have
            level = sigma * (rng.uniform(0.85, 1.15) if rng.random() < 0.3 else 1.0)
        else:
            degraded, kind = random_blur(clean, rng)
            level = BLUR_HINTS[kind] if rng.random() < 0.5 else BLUR_HINTS["auto"]
        cond = torch.full((1, 1, size, size), float(level))
        inputs.append(torch.cat([degraded, cond], 1))
        targets.append(clean)
    return torch.cat(inputs), torch.cat(targets)


def build(arch: str, width: int, depth: int) -> torch.nn.Module:
    """`drunet`: a 4-level U-Net (width x1, x2, x4, x8 channels, `depth` residual blocks a level); its 4th input
    channel is the conditioning. `compact`: SRVGGNetCompact at scale 1 (`depth` convs of `width` features, all at
    full resolution, plus a global residual), 4 channels in and out: RGB + the conditioning channel in, RGB + an
    ignored channel out (the residual connection needs as many outputs as inputs)."""
    if arch == "compact":
        return Compact(num_in_ch=4, num_out_ch=4, num_feat=width, num_conv=depth, upscale=1)
    nc = [width * m for m in (1, 2, 4, 8)]
    return DRUNet(in_nc=4, out_nc=3, nc=nc, nb=depth, act_mode="R", downsample_mode="strideconv",
                  upsample_mode="convtranspose")


def init_from_upscaler(model: torch.nn.Module, path: Path) -> None:
    """Start a scale-1 Compact from a Compact x2 upscaler: the body as it is, the conditioning input at zero, and
    the output conv reduced to the pixel-shuffle's top-left sub-pixel of each colour (a sharpening residual)."""
    from safetensors.torch import load_file

    src = load_file(str(path))
    dst = model.state_dict()
    last = max(int(k.split(".")[1]) for k in src if k.startswith("body."))
    for key, value in src.items():
        target = dst[key]
        if key == "body.0.weight":  # (feat, 3, 3, 3) -> (feat, 4, 3, 3)
            target.zero_()
            target[:, :3] = value
        elif key.startswith(f"body.{last}."):  # (3 * 4, ...) -> (4, ...)
            target.zero_()
            target[:3] = value[0::4]
        else:
            target.copy_(value)
    model.load_state_dict(dst)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("denoise", "sharpen"), required=True)
    parser.add_argument("--minutes", type=float, default=90.0, help="training time budget (wall clock)")
    parser.add_argument("--arch", choices=("drunet", "compact"), default="drunet")
    parser.add_argument("--width", type=int, default=32, help="channels at full resolution")
    parser.add_argument("--depth", type=int, default=2, help="drunet: residual blocks per level; compact: convs")
    parser.add_argument("--size", type=int, default=96, help="crop size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--photos", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--run-dir", type=Path, default=None, help="checkpoints and log (default training/runs/TASK)")
    parser.add_argument("--out", type=Path, required=True, help="final weights (.safetensors, stored as fp16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-from", type=Path, help="compact: start from a Compact x2 upscaler's weights")
    parser.add_argument("--texture-share", type=float, default=0.3,
                        help="share of crops from the full-size photos and scikit-image's images")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    run_dir = args.run_dir or Path(__file__).parent / "runs" / args.task

    photos = train_paths(ensure_photos(args.photos))
    pools = (load_pool(photos, factors=(2, 3)), load_pool(photos, factors=(1,)),
             load_pool(skimage_paths(), factors=(1,)))
    device = torch.device(args.device)
    model = build(args.arch, args.width, args.depth).to(device).to(memory_format=torch.channels_last)
    if args.init_from and not (run_dir / "checkpoint.pt").exists():
        init_from_upscaler(model, args.init_from)

    def on_resume(step: int) -> None:
        rng.seed(args.seed + step)

    step, elapsed, use_bf16 = train(
        model, lambda: make_batch(pools, args.task, args.size, args.batch, rng, args.texture_share), lr=args.lr,
        minutes=args.minutes, run_dir=run_dir, device=device, warmup=200, on_resume=on_resume)
    state = {k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    condition = "noise sigma (0..1)" if args.task == "denoise" else json.dumps(BLUR_HINTS)
    meta = {"architecture": args.arch, "task": args.task, "steps": str(step), "minutes": f"{elapsed / 60:.1f}",
            "width": str(args.width), "depth": str(args.depth), "batch": str(args.batch), "size": str(args.size),
            "bf16": str(use_bf16), "device": device.type, "condition": condition,
            "texture_share": str(args.texture_share)}
    save_file(state, str(args.out), metadata=meta)
    print(f"saved {args.out} after {step} steps, {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
