"""Train the camera-shake kernel refiner and fit the gate of `--blur motion` (`retouch/ops/shake.py`; MODELS.md,
"Camera shake: the estimated kernel, mixed in"). Everything runs on a CPU; training photos only (`validation.py`).

Per blurred crop, `retouch.ops.shake` measures the least-squares kernel that blurs the blind sharpener's output
into the crop, and the autocorrelation of the crop's gradients; `ShakeRefiner` maps both to the kernel (L1 loss;
at run time its answers for the input's eight turns and flips are averaged). The picture deconvolved with it is
mixed into the sharpener's result by a share (0, 1/4, 1/2 or 3/4) that the gate picks: three linear predictions of
the gain, fitted by ridge regression on measurements of validation crops.

The shipped refiner, step by step (samples: 15-20 minutes per 6,000 on one thread; the first line also trains):
    python training/train_shake_kernel.py refiner --samples 6000 --cache s7000.pkl --minutes 22 --out r1.pt
    python training/train_shake_kernel.py refiner --sample-seed 7100 --varied --cache s7100.pkl --minutes 0
    python training/train_shake_kernel.py refiner --from s7100.pkl s7000.pkl --init r1.pt --lr 3e-4 --minutes 25 \
        --out r2.pt                                      # 300 held-back samples: the first of s7100
    python training/train_shake_kernel.py refiner --sample-seed 7200 --varied --cache s7200.pkl --minutes 0
    python training/train_shake_kernel.py refiner --sample-seed 7300 --varied --cache s7300.pkl --minutes 0
    python training/train_shake_kernel.py refiner --from s7100.pkl s7000.pkl s7200.pkl --init r2.pt --lr 3e-4 \
        --minutes 16 --out r3.pt                         # one thread, beside the making of s7300
    python training/train_shake_kernel.py --threads 2 refiner --from s7100.pkl s7000.pkl s7200.pkl s7300.pkl \
        --init r3.pt --lr 3e-4 --minutes 25 --out refiner.pt
    python training/train_shake_kernel.py export refiner.pt              # -> the builtin safetensors file
    python training/train_shake_kernel.py gate-set --seed 5000 --crops 64 --out gate-a.pkl
    python training/train_shake_kernel.py gate-set --seed 6000 --crops 128 --out gate-b.pkl  (and 8000: gate-c)
    python training/train_shake_kernel.py fit-gate gate-a.pkl gate-b.pkl --test gate-c.pkl   # gates compared
    python training/train_shake_kernel.py fit-gate gate-a.pkl gate-b.pkl gate-c.pkl          # ops/shake.py's GATE
    python training/train_shake_kernel.py evaluate [--eval-seed 2000]    # per line: averaging and both gates
"""

from __future__ import annotations

import argparse
import pickle
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from degradations import blur, motion_kernel, splat_path
from photos import DEFAULT_ROOT, ensure_photos
from retouch.engine import Engine
from retouch.engine.registry import resolve
from retouch.ops import shake
from retouch.ops.deconvolve import deconvolve
from retouch.ops.noise import estimate_sigma
from retouch.tasks.sharpen import BLUR_HINTS
from safetensors.torch import load_file, save_file
from validation import psnr, validation_crops

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from shaken_pictures import shake_kernel  # noqa: E402  (the S-shaped shake of the tests: not a shape training draws)

KERNEL_SIZE = shake.KERNEL_SIZE
TRUST = 1.5  # the first, fixed gate: the half share where the deconvolution strays at most this far (see evaluate)
SHARES = (0.25, 0.5, 0.75)  # the gate's shares of the deconvolution
RIDGE = 1.0  # the gate's ridge weight (not on the intercept)
SAMPLE_SIZE, SAMPLE_SEED, EVAL_SEED = 192, 7000, 2000


class Tools:
    """The blind sharpener and the deconvolution, through a CPU engine (bf16 where the CPU has it)."""

    def __init__(self) -> None:
        self.engine = Engine(device="cpu")
        self.sharpener = self.engine.get(resolve("retouch-sharpen"))
        self.denoise_spec = resolve("retouch-denoise")
        self.denoiser = self.engine.get(self.denoise_spec)

    def sharpen(self, blurred: np.ndarray) -> np.ndarray:
        return self.engine.run(self.sharpener, blurred, condition=BLUR_HINTS["auto"])[0]

    def deconvolve(self, blurred: np.ndarray, kernel: np.ndarray, noise: float) -> np.ndarray:
        """`blurred` deconvolved by `kernel`; `noise` is its noise level (0..1 scale, `estimate_sigma`)."""
        def denoise(x: np.ndarray, sigma: float) -> np.ndarray:
            return self.engine.run(self.denoiser, x, condition=sigma * self.denoise_spec.condition_scale)[0]

        return deconvolve(blurred, kernel, noise, denoise)

    def motion(self, net: shake.ShakeRefiner, blurred: np.ndarray
               ) -> tuple[np.ndarray, shake.ShakeEstimate, np.ndarray, np.ndarray]:
        """What `--blur motion` computes for a crop (`shake.mix_with_deconvolution`, on the whole crop): the
        sharpener's result, the shake estimated by `net`, the deconvolution with it, and the gate's features."""
        sharpened = self.sharpen(blurred)
        estimate = shake.estimate_shake(blurred, sharpened, net)
        noise = estimate_sigma(blurred)
        deconvolved = self.deconvolve(blurred, estimate.kernel, noise)
        return sharpened, estimate, deconvolved, shake.gate_features(blurred, sharpened, deconvolved, estimate, noise)


def varied_shake(length: float, rng: random.Random) -> np.ndarray:
    """A wider family than `degradations.motion_kernel`: the path bends in 1-3 pieces, each with its own curvature
    (S shapes, hooks), more jitter, and uneven dwell; about `length` px, on the 21 x 21 grid, centred."""
    steps = 64
    direction = rng.uniform(0, 2 * np.pi)
    cuts = sorted(rng.sample(range(8, steps - 8), rng.randint(0, 2)))
    bends = [rng.uniform(-4.0, 4.0) / steps for _ in range(len(cuts) + 1)]
    jitter = rng.uniform(0.0, 1.2)
    points, position = [], np.zeros(2)
    for i in range(steps):
        points.append(position.copy())
        direction += bends[sum(i >= c for c in cuts)] + rng.gauss(0, jitter) / np.sqrt(steps)
        position = position + np.array([np.cos(direction), np.sin(direction)])
    path = np.array(points)
    path = (path - path.mean(0)) * (length / (np.linalg.norm(np.ptp(path, axis=0)) or 1.0))
    return splat_path(path, np.array([rng.uniform(0.2, 1.0) for _ in range(steps)]), KERNEL_SIZE)


def shaken(crop: torch.Tensor, kernel: np.ndarray, sigma: float, gen: np.random.Generator) -> np.ndarray:
    out = blur(crop[None], kernel)[0].permute(1, 2, 0).numpy()
    return np.clip(out + gen.normal(0, sigma, out.shape), 0, 1).astype(np.float32)


def load_refiner(weights: Path | None) -> shake.ShakeRefiner:
    """The refiner from a training checkpoint (.pt) or a safetensors file; None: the builtin one."""
    if weights is None:
        return shake.refiner()
    net = shake.ShakeRefiner()
    state = load_file(str(weights)) if weights.suffix == ".safetensors" else torch.load(weights)
    net.load_state_dict(state)
    return net.eval()


# ---- the refiner ---------------------------------------------------------------------------------------------------
def make_samples(count: int, tools: Tools, varied: bool = False,
                 seed: int = SAMPLE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N x 2 x 41 x 41) and centred true kernels (N x 21 x 21): half scenes at 1/2-1/3, half the most
    detailed crops at 1/2; shakes of 4-16 px (`varied`: half of them from `varied_shake`); noise sigma 1-3 of
    255."""
    rng, gen = random.Random(seed), np.random.default_rng(seed)
    photos = ensure_photos(DEFAULT_ROOT)
    crops = (validation_crops(photos, "v3", count // 2, SAMPLE_SIZE, (2, 3), False, seed) +
             validation_crops(photos, "v3", count - count // 2, SAMPLE_SIZE, (2,), True, seed + 1))
    inputs, kernels = [], []
    for i, crop in enumerate(crops):
        length = rng.uniform(4, 16)
        kernel = varied_shake(length, rng) if varied and i % 2 else motion_kernel(length, rng)
        blurred = shaken(crop, kernel, rng.choice([1.0, 2.0, 2.0, 3.0]) / 255, gen)
        inputs.append(shake.refiner_input(blurred, shake.rough_kernel(blurred, tools.sharpen(blurred))))
        kernels.append(shake.centred(kernel, KERNEL_SIZE).astype(np.float32))
        if i % 500 == 0:
            print(f"  sample {i}/{count}", flush=True)
    return np.stack(inputs), np.stack(kernels)


def train(inputs: np.ndarray, kernels: np.ndarray, minutes: float, out: Path, init: Path | None = None,
          lr: float = 1e-3) -> None:
    """Adam at `lr`, batch 48, L1 between kernels, each sample turned and flipped at random; the first 300 samples
    (a fifth of fewer) held out for the printed validation error. `init`: weights to start from."""
    x, k = torch.from_numpy(inputs), torch.from_numpy(kernels)
    held = min(300, len(x) // 5)
    x_val, k_val, x, k = x[:held], k[:held], x[held:], k[held:]
    net = shake.ShakeRefiner() if init is None else load_refiner(init)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr)
    start, step = time.time(), 0
    while time.time() - start < minutes * 60:
        batch = torch.randint(len(x), (48,))
        turns, flip = random.randrange(4), random.random() < 0.5
        xb, kb = torch.rot90(x[batch], turns, (2, 3)), torch.rot90(k[batch], turns, (1, 2))
        if flip:
            xb, kb = xb.flip(3), kb.flip(2)
        loss = (net(xb) - kb).abs().sum((1, 2)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 500 == 0 or time.time() - start >= minutes * 60:
            with torch.no_grad():
                val = float((net(x_val) - k_val).abs().sum((1, 2)).mean())
            print(f"  step {step} ({time.time() - start:.0f} s): train L1 {loss.item():.3f}, validation L1 {val:.3f}",
                  flush=True)
            torch.save(net.state_dict(), out)
    torch.save(net.state_dict(), out)


def export(weights: Path) -> None:
    state = {name: value.contiguous() for name, value in torch.load(weights).items()}
    save_file(state, str(shake.REFINER_FILE), metadata={
        "description": "ShakeRefiner (6 dilated convs, 32 channels): least-squares kernel + gradient autocorrelation "
                       "-> camera-shake kernel 21x21",
        "training": "training/train_shake_kernel.py refiner (photo set v3)", "license": "MIT"})
    shake.REFINER_FILE.chmod(0o644)
    print(f"wrote {shake.REFINER_FILE}")


# ---- the gate ------------------------------------------------------------------------------------------------------
def gate_set(tools: Tools, net: shake.ShakeRefiner, seed: int, count: int) -> list[dict]:
    """Per validation crop (256 px; `count` of the most detailed at 1/2, `count` scenes at 1/2-1/3; every other one
    shaken by `varied_shake`, the rest by `motion_kernel`, 5-15 px; noise sigma 1-3): the gate's features and the
    gain (dB over the blurred crop) of the sharpener (`sharpened`) and of each mix (`mixed`, by share)."""
    rows: list[dict] = []
    for factors, detailed in (((2,), True), ((2, 3), False)):
        crops = validation_crops(ensure_photos(DEFAULT_ROOT), "v3", count, 256, factors, detailed, seed)
        rng, gen = random.Random(seed + 11), np.random.default_rng(seed + 11)
        for i, crop in enumerate(crops):
            length = rng.uniform(5, 15)
            kernel = varied_shake(length, rng) if i % 2 else motion_kernel(length, rng)
            blurred = shaken(crop, kernel, rng.choice([1.0, 2.0, 2.0, 3.0]) / 255, gen)
            clean = crop.permute(1, 2, 0).numpy()
            sharpened, estimate, deconvolved, features = tools.motion(net, blurred)
            base = psnr(blurred, clean)
            rows.append({
                "detailed": detailed, "varied": bool(i % 2),
                "kernel_error": shake.kernel_error(estimate.kernel, kernel), "features": features,
                "sharpened": psnr(sharpened, clean) - base, "deconvolved": psnr(deconvolved, clean) - base,
                "mixed": {share: psnr((1 - share) * sharpened + share * deconvolved, clean) - base
                          for share in SHARES}})
        print(f"  {len(rows)} crops", flush=True)
    return rows


def fit_gate(rows: list[dict]) -> dict[float, np.ndarray]:
    """Per share, ridge regression of the mix's gain over the sharpener on the features."""
    x = np.stack([r["features"] for r in rows])
    penalty = RIDGE * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    return {share: np.linalg.solve(x.T @ x + penalty, x.T @ np.array([r["mixed"][share] - r["sharpened"]
                                                                      for r in rows]))
            for share in SHARES}


def gate_rules(gate: dict[float, np.ndarray]) -> dict[str, Callable[[dict], float]]:
    """Each rule's gain on a gate-set row."""

    def best_share(r: dict) -> float:
        share, _ = shake.best_share(r["features"], gate)
        return r["sharpened"] if share == 0.0 else r["mixed"][share]

    strays = lambda r: float(np.exp(r["features"][1]))  # noqa: E731
    return {
        "sharpener alone": lambda r: r["sharpened"],
        "half, always": lambda r: r["mixed"][0.5],
        "quarter, always": lambda r: r["mixed"][0.25],
        f"half where strays <= {TRUST}": lambda r: r["mixed"][0.5] if strays(r) <= TRUST else r["sharpened"],
        "half where the gate predicts a gain": lambda r: r["mixed"][0.5] if r["features"] @ gate[0.5] > 0
        else r["sharpened"],
        "the gate's best share (shipped)": best_share,
    }


def compare(rows: list[dict], gate: dict[float, np.ndarray]) -> None:
    print(f"  {'rule':40} {'shakes':28} {'gain dB':>8} {'vs sharpener':>13} {'worst':>7} {'crops losing':>13}")
    for name, rule in gate_rules(gate).items():
        for varied in (False, True):
            sel = [r for r in rows if r["varied"] == varied]
            gain = np.array([rule(r) for r in sel])
            over = gain - np.array([r["sharpened"] for r in sel])
            print(f"  {name:40} {'varied (1-3 bends)' if varied else 'generator (motion_kernel)':28} "
                  f"{gain.mean():+8.2f} {over.mean():+13.2f} {over.min():+7.2f} "
                  f"{100 * np.mean(over < -0.1):12.0f}%")


# ---- evaluation on validation crops ----------------------------------------------------------------------------------
def evaluate(net: shake.ShakeRefiner, tools: Tools, count: int, seed: int = EVAL_SEED) -> None:
    """Per line of validation crops (256 px, noise sigma 2), the mean gain over the blurred crop of the sharpener,
    the deconvolution, their average, the average gated by straying (TRUST), the builtin gate's mix, and the kernel's
    L1 error."""
    lines = (("most detailed crops at 1/2", (2,), True), ("crops at 1/2 and 1/3", (2, 3), False))
    print("mean gain over the blurred crop, dB: sharpener | deconvolution | average | straying gate (crops averaged) "
          "| the builtin gate's mix | kernel L1 error")
    for label, factors, detailed in lines:
        crops = validation_crops(ensure_photos(DEFAULT_ROOT), "v3", count, 256, factors, detailed, seed)
        rng, gen = random.Random(seed + 77), np.random.default_rng(seed + 77)
        for shape in ("random shakes 5-15 px", "the tests' S-shaped shake"):
            rows = []
            for crop in crops:
                kernel = motion_kernel(rng.uniform(5, 15), rng) if shape.startswith("random") else shake_kernel()
                blurred, clean = shaken(crop, kernel, 2 / 255, gen), crop.permute(1, 2, 0).numpy()
                sharpened, estimate, deconvolved, features = tools.motion(net, blurred)
                strays = float(np.exp(features[1]))
                share, _ = shake.best_share(features)
                average = 0.5 * (sharpened + deconvolved)
                base = psnr(blurred, clean)
                rows.append([psnr(sharpened, clean) - base, psnr(deconvolved, clean) - base,
                             psnr(average, clean) - base,
                             psnr(average if strays <= TRUST else sharpened, clean) - base, strays <= TRUST,
                             psnr((1 - share) * sharpened + share * deconvolved, clean) - base,
                             shake.kernel_error(estimate.kernel, kernel)])
            r = np.array(rows, np.float64)
            print(f"  {label}, {shape}: {r[:, 0].mean():+.2f} | {r[:, 1].mean():+.2f} | {r[:, 2].mean():+.2f} | "
                  f"{r[:, 3].mean():+.2f} ({int(r[:, 4].sum())}/{len(r)}) | {r[:, 5].mean():+.2f} (worst crop "
                  f"against the sharpener {(r[:, 5] - r[:, 0]).min():+.2f}) | {r[:, 6].mean():.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("refiner", help="make samples and train the refiner")
    p.add_argument("--samples", type=int, default=6000)
    p.add_argument("--minutes", type=float, default=22.0)
    p.add_argument("--out", type=Path, default=Path("refiner.pt"), help="the refiner's weights (torch)")
    p.add_argument("--cache", type=Path, default=None, help="keep the samples in this pickle file")
    p.add_argument("--varied", action="store_true", help="half the training shakes from varied_shake")
    p.add_argument("--sample-seed", type=int, default=SAMPLE_SEED, help="which crops and shakes")
    p.add_argument("--from", dest="sources", type=Path, nargs="*", default=[],
                   help="train on these sample files (from --cache) instead of making samples")
    p.add_argument("--init", type=Path, default=None, help="refiner weights to start from (.pt or .safetensors)")
    p.add_argument("--lr", type=float, default=1e-3)
    p = steps.add_parser("export", help="a trained refiner (.pt) as the builtin safetensors file")
    p.add_argument("weights", type=Path)
    p = steps.add_parser("gate-set", help="measure validation crops for the gate")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--crops", type=int, default=64, help="crops per line (two lines)")
    p.add_argument("--refiner", type=Path, default=None, help="refiner weights (default: the builtin ones)")
    p.add_argument("--out", type=Path, required=True)
    p = steps.add_parser("fit-gate", help="fit the gate on gate sets; print it, or compare rules on --test")
    p.add_argument("sets", type=Path, nargs="+")
    p.add_argument("--test", type=Path, nargs="*", default=[])
    p = steps.add_parser("evaluate", help="validation table of the refiner, averaging and the gates")
    p.add_argument("--refiner", type=Path, default=None, help="refiner weights (default: the builtin ones)")
    p.add_argument("--crops", type=int, default=8, help="validation crops per line")
    p.add_argument("--eval-seed", type=int, default=EVAL_SEED,
                   help=f"which validation crops and shakes ({EVAL_SEED}: those the straying gate was chosen on)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.step == "export":
        export(args.weights)
    elif args.step == "fit-gate":
        rows = [r for path in args.sets for r in pickle.loads(path.read_bytes())]  # noqa: S301 (files we wrote)
        gate = fit_gate(rows)
        for share, coefficients in gate.items():
            print(f"{share}: ({', '.join(f'{c:.3f}' for c in coefficients)}),")
        if args.test:
            test = [r for path in args.test for r in pickle.loads(path.read_bytes())]  # noqa: S301
            print(f"fitted on {len(rows)} crops, compared on {len(test)}:")
            compare(test, gate)
    elif args.step == "refiner":
        if args.sources:
            parts = [pickle.loads(path.read_bytes()) for path in args.sources]  # noqa: S301 (files this script wrote)
            inputs, kernels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        elif args.cache is not None and args.cache.exists():
            inputs, kernels = pickle.loads(args.cache.read_bytes())  # noqa: S301 (a file this script wrote)
        else:
            inputs, kernels = make_samples(args.samples, Tools(), args.varied, args.sample_seed)
            if args.cache is not None:
                args.cache.write_bytes(pickle.dumps((inputs, kernels)))
        if args.minutes > 0:
            train(inputs, kernels, args.minutes, args.out, args.init, args.lr)
    elif args.step == "gate-set":
        rows = gate_set(Tools(), load_refiner(args.refiner), args.seed, args.crops)
        args.out.write_bytes(pickle.dumps(rows))
    else:
        evaluate(load_refiner(args.refiner), Tools(), args.crops, args.eval_seed)


if __name__ == "__main__":
    main()
