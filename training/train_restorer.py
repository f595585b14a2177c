"""Train Retouch's builtin denoiser or deblurrer (both DRUNet), each with one conditioning input channel.

`--arch drunet`: a U-Net of residual blocks, loadable by spandrel, whose 4th input channel is the conditioning: for
denoise the noise level (sigma on the 0..1 scale) as in the original DRUNet, so `--noise-level` steers it and
`auto` feeds an estimate; for sharpen a blur hint: 0 = unknown, 0.25 = defocus, 0.5 = camera shake, the true hint
for half the samples and 0 for the others. `--channels` sets the four levels' widths (the sharpener puts more of
its capacity near full resolution: 64,96,128,160). `--arch compact`: SRVGGNetCompact at scale 1, every convolution
at full resolution, 4 channels in and out, started from our x2 upscaler's weights (`--init-from`); the previous
sharpener, kept for CPU-only runs.

Recipe: random crops of the training photos at 1/2 and 1/3 of their size (downscaling leaves clean, sharp
targets) and, for `--texture-share` of the samples, crops of the same photos at full size (half of those) and of
scikit-image's bundled photographs and textures (the other half): the wallpapers alone are smooth, and a net
trained on them only over-smooths fine texture. Then flips and rotations, the synthetic degradations of
`degradations.py`, L1 loss, Adam, a short warm-up and a cosine learning rate over a fixed time budget, bf16 autocast
where the device has it. Crops are cut and degraded on the training device (the photos are copied there once), so
a GPU is not starved by the CPU. It checkpoints every two minutes and resumes, so a stop loses minutes, not the run.

    python training/train_restorer.py --task denoise --minutes 131 --threads 1 --out retouch-denoise.safetensors
    python training/train_restorer.py --task sharpen --channels 64,96,128,160 --batch 48 --size 128 --minutes 10 \
        --out retouch-sharpen.safetensors                      # on a GPU (--device cuda is the default there)

The model card (daemon/retouch/models/MODELS.md) lists the exact runs behind the shipped weights.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch
from degradations import BLUR_HINTS, KernelBank, random_blur, random_noise
from loop import add_ema_arg, add_start_after_arg, load_weights, train, wait_for_start
from photos import add_photo_args, ensure_photos, skimage_paths, train_paths
from safetensors.torch import save_file
from spandrel.architectures.Compact import Compact
from spandrel.architectures.DRUNet import DRUNet
from train_upscaler import load_pool


def sample_crops(pools, n: int, size: int, rng: random.Random, texture_share: float,
                 detail_share: float = 0.0) -> torch.Tensor:
    """n random crops (flipped and turned) as N x 3 x size x size in [0, 1], on the pools' device. Flat crops teach
    nothing: twice as many candidates are cut, and a flat one (std < 8/255) is kept with probability 0.2 only.
    `detail_share` of the n are instead the candidates with the most fine detail (mean absolute Laplacian): the
    wallpapers are mostly soft, and a restorer learns little about dense texture (grass, gravel, sand) from them.
    One device sync per batch, so a GPU is not made to wait for every crop."""
    base, full_size, bundled = pools
    candidates = []
    for _ in range(2 * n):
        r = rng.random()
        pool = full_size if r < texture_share / 2 else bundled if r < texture_share else base
        src = rng.choices(pool, weights=[t.shape[1] * t.shape[2] for t in pool])[0]
        y, x = rng.randrange(0, src.shape[1] - size), rng.randrange(0, src.shape[2] - size)
        crop = torch.rot90(src[:, y : y + size, x : x + size], rng.randrange(4), (1, 2))
        candidates.append(crop.flip(2) if rng.random() < 0.5 else crop)
    crops = torch.stack(candidates).float() / 255.0
    keep: list[int] = []
    if detail_share > 0:
        keep = torch.argsort(fine_detail(crops), descending=True)[: round(detail_share * n)].tolist()
    stds = (crops.flatten(1).std(1) * 255).tolist()
    keep += [i for i, std in enumerate(stds) if i not in keep and (std > 8 or rng.random() < 0.2)][: n - len(keep)]
    keep += [i for i in range(2 * n) if i not in keep][: n - len(keep)]
    return crops[keep]


def fine_detail(crops: torch.Tensor) -> torch.Tensor:
    """Per crop of an N x 3 x H x W batch, the mean absolute Laplacian of its gray."""
    gray = crops.mean(1)
    lap = (4 * gray[:, 1:-1, 1:-1] - gray[:, :-2, 1:-1] - gray[:, 2:, 1:-1] - gray[:, 1:-1, :-2]
           - gray[:, 1:-1, 2:])
    return lap.abs().mean((1, 2))


def make_batch(pools, task: str, size: int, batch: int, rng: random.Random, texture_share: float,
               gen: torch.Generator | None = None, bank: KernelBank | None = None,
               motion_share: float = 0.5, detail_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of (degraded + conditioning channel, clean), made on the device the pools live on."""
    clean = sample_crops(pools, batch, size, rng, texture_share, detail_share)
    inputs = []
    for i in range(batch):
        if task == "denoise":
            degraded, sigma = random_noise(clean[i : i + 1], rng, gen)
            # a little slack around the true level, as an estimate would have
            level = sigma * (rng.uniform(0.85, 1.15) if rng.random() < 0.3 else 1.0)
        else:
            degraded, kind = random_blur(clean[i : i + 1], rng, gen, bank, motion_share)
            level = BLUR_HINTS[kind] if rng.random() < 0.5 else BLUR_HINTS["auto"]
        cond = torch.full((1, 1, size, size), float(level), device=clean.device)
        inputs.append(torch.cat([degraded, cond], 1))
    return torch.cat(inputs), clean


def build(arch: str, width: int, depth: int, channels: list[int] | None = None) -> torch.nn.Module:
    """`drunet`: a 4-level U-Net (width x1, x2, x4, x8 channels unless `channels` lists the four, `depth` residual
    blocks a level); its 4th input channel is the conditioning. `compact`: SRVGGNetCompact at scale 1 (`depth`
    convs of `width` features, all at full resolution, plus a global residual), 4 channels in and out: RGB + the
    conditioning channel in, RGB + an ignored channel out (the residual connection needs as many outputs as inputs)."""
    if arch == "compact":
        return Compact(num_in_ch=4, num_out_ch=4, num_feat=width, num_conv=depth, upscale=1)
    nc = channels or [width * m for m in (1, 2, 4, 8)]
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
    parser.add_argument("--channels", type=lambda v: [int(c) for c in v.split(",")],
                        help="drunet: the four levels' channels, e.g. 64,96,128,160 (default: width x1,2,4,8)")
    parser.add_argument("--init-weights", type=Path, help="start from these weights of the same architecture")
    add_start_after_arg(parser)
    parser.add_argument("--size", type=int, default=96, help="crop size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_photo_args(parser)
    add_ema_arg(parser)
    parser.add_argument("--run-dir", type=Path, default=None, help="checkpoints and log (default training/runs/TASK)")
    parser.add_argument("--out", type=Path, required=True, help="final weights (.safetensors, stored as fp16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-from", type=Path, help="compact: start from a Compact x2 upscaler's weights")
    parser.add_argument("--texture-share", type=float, default=0.3,
                        help="share of crops from the full-size photos and scikit-image's images")
    parser.add_argument("--detail-share", type=float, default=0.0,
                        help="share of each batch cut where the photos have the most fine detail (of 2x candidates)")
    parser.add_argument("--motion-share", type=float, default=0.5,
                        help="sharpen: share of crops blurred by camera shake (the rest defocus, 5 %% nearly sharp)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    run_dir = args.run_dir or Path(__file__).parent / "runs" / args.task

    photos = train_paths(ensure_photos(args.photos), args.photo_set)
    device = torch.device(args.device)
    pools = tuple([t.to(device) for t in load_pool(paths, factors=factors)]
                  for paths, factors in ((photos, (2, 3)), (photos, (1,)), (skimage_paths(args.skimage_dir), (1,))))
    # CPU: noise from generators seeded by `rng` (reproducible); GPU: from one device generator, no copies
    gen = torch.Generator(device).manual_seed(args.seed) if device.type == "cuda" else None
    bank = KernelBank(random.Random(args.seed + 1), device=device) if args.task == "sharpen" else None
    model = build(args.arch, args.width, args.depth, args.channels).to(device).to(memory_format=torch.channels_last)
    if not (run_dir / "checkpoint.pt").exists():
        if args.init_from:
            init_from_upscaler(model, args.init_from)
        if args.init_weights:
            load_weights(model, args.init_weights)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    wait_for_start(args.start_after)

    def on_resume(step: int) -> None:
        rng.seed(args.seed + step)

    def export(step: int, elapsed: float, use_bf16: bool) -> None:
        """The weights as fp16 safetensors with the recipe in the metadata, written atomically."""
        state = {k: v.detach().cpu().half().contiguous() for k, v in model.state_dict().items()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        condition = "noise sigma (0..1)" if args.task == "denoise" else json.dumps(BLUR_HINTS)
        channels = args.channels or [args.width * m for m in (1, 2, 4, 8)]
        meta = {"architecture": args.arch, "task": args.task, "steps": str(step), "minutes": f"{elapsed / 60:.1f}",
                "width": str(args.width), "depth": str(args.depth), "batch": str(args.batch), "size": str(args.size),
                "bf16": str(use_bf16), "device": device.type, "condition": condition,
                "texture_share": str(args.texture_share), "lr": str(args.lr), "photo_set": args.photo_set,
                "motion_share": str(args.motion_share) if args.task == "sharpen" else "",
                "detail_share": str(args.detail_share), "ema": str(args.ema),
                "channels": ",".join(map(str, channels)) if args.arch == "drunet" else ""}
        tmp = args.out.with_suffix(".tmp")
        save_file(state, str(tmp), metadata=meta)
        tmp.replace(args.out)

    step, elapsed, use_bf16 = train(
        model, lambda: make_batch(pools, args.task, args.size, args.batch, rng, args.texture_share, gen, bank,
                                  args.motion_share, args.detail_share),
        lr=args.lr, minutes=args.minutes, run_dir=run_dir, device=device, warmup=200, ema=args.ema,
        on_resume=on_resume, on_checkpoint=export)
    export(step, elapsed, use_bf16)
    print(f"saved {args.out} after {step} steps, {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
