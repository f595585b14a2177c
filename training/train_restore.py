"""Train the restore task's two builtin nets: the damage detector and the inpainter (both DRUNet, so spandrel loads
them and the engine tiles them like every other model).

`--net detect`: RGB (+ an unused constant channel: spandrel's DRUNet always has one) -> one channel, the damage
map: a pixel is damaged where the output exceeds 0.5. Trained as logits 8 x (output - 0.5) with binary
cross-entropy (damaged pixels weighted 3x: they are ~2 % of the picture) plus a soft Dice term (thin scratches
count as much as big blotches), so the engine's [0, 1] clamp keeps every decision.

`--net inpaint`: the damaged RGB with the mask filled by OpenCV's Telea + the mask (the true damage mask, dilated by
1-2 px as the task dilates the detected one, sometimes with pieces missing or extra: detection is not perfect) ->
the restored RGB. It refines Telea's smooth fill (texture, edges carried through) rather than starting from a hole,
which a small net on a CPU budget learns far faster. L1 against the undamaged photo, 10x inside the mask.

Data: random 128 px crops of the training photos (at 1/2 and 1/3 of their size, plus full-size and scikit-image
crops for texture), damaged by `damage.py`. The loop (`loop.py`): Adam, warm-up, cosine learning rate over a
wall-clock budget, bf16 autocast where the CPU has it, checkpoints every two minutes that a rerun resumes.

    python training/train_restore.py --net detect --minutes 50 --threads 1 --out retouch-damage.safetensors
    python training/train_restore.py --net inpaint --minutes 50 --threads 1 --out retouch-inpaint.safetensors
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from damage import damage, natural_strokes
from loop import add_common_args, export_weights, load_weights, train
from photos import add_photo_args, ensure_photos, skimage_paths, train_paths
from retouch.ops.inpaint import telea
from spandrel.architectures.DRUNet import DRUNet
from train_restorer import sample_crops
from train_upscaler import load_pool

LOGIT_GAIN = 8.0  # logits = gain x (output - 0.5): the engine's [0, 1] output spans logits -4..4
POS_WEIGHT = 3.0
HOLE_WEIGHT = 10.0


def fill_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What the inpainter is asked to fill: the true damage, dilated by 1-2 px, with detection's errors (a few
    missed pieces, a few extra specks) some of the time."""
    m = mask.astype(np.uint8)
    radius = int(rng.integers(1, 3))
    m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1)))
    if rng.random() < 0.3:  # a missed piece: a square of the mask dropped
        h, w = m.shape
        y, x, s = int(rng.integers(0, h)), int(rng.integers(0, w)), int(rng.integers(8, 32))
        m[y : y + s, x : x + s] = 0
    if rng.random() < 0.3:  # false positives: specks on undamaged texture
        extra = (rng.random(m.shape) < 0.002).astype(np.uint8)
        m |= cv2.dilate(extra, np.ones((3, 3), np.uint8))
    return m.astype(np.float32)


def make_batch(pools, net: str, size: int, batch: int, rng: random.Random, nrng: np.random.Generator,
               texture_share: float, decoy_share: float = 0.0,
               detail_share: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    clean = sample_crops(pools, batch, size, rng, texture_share, detail_share).permute(0, 2, 3, 1).numpy()
    inputs, targets = [], []
    for img in clean:
        if decoy_share and nrng.random() < decoy_share:  # thin lines of the scene itself: not damage
            img = natural_strokes(img, nrng)
        damaged, base, mask = damage(img, nrng, amount=nrng.uniform(0.3, 1.6))
        if net == "detect":
            extra, target = np.zeros((size, size, 1), np.float32), mask[..., None].astype(np.float32)
        else:
            hole = fill_mask(mask, nrng)
            damaged = telea(damaged, hole.astype(bool))  # the task hands it Telea's fill to refine
            extra, target = hole[..., None], np.concatenate([base, hole[..., None]], 2)
        inputs.append(np.concatenate([damaged, extra], 2))
        targets.append(target)
    to_t = lambda arrs: torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).contiguous()  # noqa: E731
    return to_t(inputs), to_t(targets)


def detect_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    logits = LOGIT_GAIN * (out[:, :1] - 0.5)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(POS_WEIGHT))
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + dice


def inpaint_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    base, hole = target[:, :3], target[:, 3:4]
    weight = 1 + (HOLE_WEIGHT - 1) * hole
    return ((out[:, :3] - base).abs() * weight).sum() / (weight.sum() * 3)


def build(net: str, channels: list[int], depth: int) -> torch.nn.Module:
    return DRUNet(in_nc=4, out_nc=1 if net == "detect" else 3, nc=channels, nb=depth, act_mode="R",
                  downsample_mode="strideconv", upsample_mode="convtranspose")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, minutes=50.0, batch=12, lr=5e-4)
    parser.add_argument("--net", choices=("detect", "inpaint"), required=True)
    parser.add_argument("--channels", type=lambda v: [int(c) for c in v.split(",")], default=None,
                        help="the four levels' channels (default: detect 16,32,64,128; inpaint 24,48,96,192)")
    parser.add_argument("--depth", type=int, default=2, help="residual blocks per level (spandrel needs 2 or more)")
    add_photo_args(parser)
    parser.add_argument("--run-dir", type=Path, default=None, help="checkpoints and log (default training/runs/NET)")
    parser.add_argument("--texture-share", type=float, default=0.3)
    parser.add_argument("--decoy-share", type=float, default=0.0,
                        help="detect: share of crops given grass-like strokes of their own (damage.natural_strokes)")
    parser.add_argument("--detail-share", type=float, default=0.0,
                        help="share of each batch cut where the photos have the most fine detail (of 2x candidates)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    rng, nrng = random.Random(args.seed), np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    run_dir = args.run_dir or Path(__file__).parent / "runs" / args.net
    channels = args.channels or ([16, 32, 64, 128] if args.net == "detect" else [24, 48, 96, 192])
    photos = train_paths(ensure_photos(args.photos), args.photo_set)
    pools = tuple(load_pool(paths, factors=factors)
                  for paths, factors in ((photos, (2, 3)), (photos, (1,)), (skimage_paths(args.skimage_dir), (1,))))
    device = torch.device(args.device)
    model = build(args.net, channels, args.depth)
    if args.init is not None:
        load_weights(model, args.init)
    model = model.to(device).to(memory_format=torch.channels_last)

    def on_resume(step: int) -> None:
        rng.seed(args.seed + step)
        nrng.bit_generator.state = np.random.default_rng(args.seed + step).bit_generator.state

    def export(step: int, elapsed: float, use_bf16: bool) -> None:
        export_weights(model, args.out, {
            "architecture": "drunet", "task": "restore", "net": args.net, "steps": str(step),
            "minutes": f"{elapsed / 60:.1f}", "channels": ",".join(map(str, channels)), "depth": str(args.depth),
            "batch": str(args.batch), "size": str(args.size), "bf16": str(use_bf16), "device": device.type,
            "lr": str(args.lr), "texture_share": str(args.texture_share), "decoy_share": str(args.decoy_share),
            "detail_share": str(args.detail_share), "init": args.init.name if args.init else "",
            "photo_set": args.photo_set})

    step, elapsed, use_bf16 = train(
        model, lambda: make_batch(pools, args.net, args.size, args.batch, rng, nrng, args.texture_share,
                                  args.decoy_share, args.detail_share),
        lr=args.lr, minutes=args.minutes, run_dir=run_dir, device=device, warmup=200, ema=args.ema,
        on_resume=on_resume, on_checkpoint=export, loss_fn=detect_loss if args.net == "detect" else inpaint_loss)
    export(step, elapsed, use_bf16)
    print(f"saved {args.out} after {step} steps, {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
