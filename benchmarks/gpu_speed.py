"""GPU speed and memory, measured side by side in one run. Needs a CUDA GPU (nothing in the tests does).

    python benchmarks/gpu_speed.py [--json results.json]
    python benchmarks/gpu_speed.py --device cpu --small      # a dry run of the same code on the CPU

1. RRDBNet x4plus (23 RRDB blocks, 64 features, x4; ~2.24 TFLOP per output megapixel) with seeded random weights:
   the GPU machine gets no x4plus file, and the speed of a network does not depend on its values. Forward-only
   throughput per precision, plain and replayed as a CUDA graph, as TFLOP/s against the card's dense fp16 peak; then
   whole jobs on one photo: our engine (tiles planned under the VRAM budget, transfers, blending) against the
   chaiNNer-style loop of benchmarks/speed.py (fp32 NCHW, 256 px tiles, 16 px overlap) on the same input.
2. Our builtin models: seconds per output megapixel in fp32 and in the GPU default (fp16, or bf16 where the
   architecture does not support fp16), and the PSNR between the two outputs (the quality cost of the precision).
3. VRAM: the peak a job allocates (weights included) for 6, 12 and 24 MP inputs at x2 and for x4plus at x4, under
   the default 8 GiB budget and a 2 GiB one, with the tile the planner chose: the ceiling the budget promises.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from speed import best_of, chainner_style, psnr, to_u8  # noqa: E402

X4PLUS_TFLOP_PER_MP = 2.24
# dense (no sparsity) fp16/bf16 tensor-core peaks, TFLOP/s
FP16_PEAKS = {"H100 PCIe": 756.0, "H100": 989.4, "H200": 989.4, "A100": 312.0, "L40S": 362.0, "RTX 4090": 330.0}
GIB = 1 << 30


def card_peak(device: torch.device) -> tuple[str, float]:
    if device.type != "cuda":
        return "cpu", math.nan
    name = torch.cuda.get_device_name(device)
    for key, peak in FP16_PEAKS.items():
        if key in name:
            return name, peak
    return name, math.nan


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def x4plus_file(folder: Path) -> Path:
    """RRDBNet x4plus with seeded random weights (residual branches scaled by 0.1, as ESRGAN initialises them, so
    activations stay in fp16's range), saved where spandrel and our engine load it from."""
    from safetensors.torch import save_file
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=64, num_blocks=23, scale=4)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if ".RDB" in name and name.endswith("weight"):
                p.mul_(0.1)
    path = folder / "x4plus-random.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def forward_only(path: Path, device: torch.device, side: int, reps: int) -> None:
    import spandrel

    name, peak = card_peak(device)
    out_mp = (side * 4) ** 2 / 1e6
    print(f"\n== x4plus forward only, {side}x{side} -> {side * 4}x{side * 4} ({out_mp:.2f} MP), on {name}"
          f" (dense fp16 peak {peak:.0f} TFLOP/s)")
    print(f"{'precision':24} {'ms':>8} {'s/out MP':>9} {'TFLOP/s':>8} {'of peak':>8}")
    dtypes = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if device.type == "cpu":
        dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for label, dtype in dtypes.items():
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = label == "tf32"
        desc = spandrel.ModelLoader(device=device).load_from_file(path).eval()
        desc.model.to(dtype).to(memory_format=torch.channels_last)
        x = torch.rand(1, 3, side, side, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        runs = {"eager": lambda x=x, m=desc.model: m(x)}
        if device.type == "cuda":
            try:
                runs["CUDA graph"] = _graphed(desc.model, x)
            except Exception as exc:  # report and go on: the eager figure stands on its own
                print(f"{label}: CUDA graph capture failed: {type(exc).__name__}: {exc}")
        for how, fn in runs.items():
            with torch.inference_mode():
                for _ in range(2):
                    fn()
                sync(device)
                started = time.perf_counter()
                for _ in range(reps):
                    fn()
                sync(device)
            t = (time.perf_counter() - started) / reps
            tflops = X4PLUS_TFLOP_PER_MP * out_mp / t
            print(f"{label + ', ' + how:24} {t * 1e3:8.1f} {t / out_mp:9.4f} {tflops:8.1f} {tflops / peak:7.1%}")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _graphed(model: torch.nn.Module, x: torch.Tensor):
    with torch.inference_mode():
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                model(x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(x)
    return graph.replay


def photo(height: int, width: int) -> np.ndarray:
    """A held-out test crop resized to height x width, float32 [0, 1] (content matters little for speed)."""
    img = cv2.imread(str(HERE.parent / "tests" / "data" / "heldout" / "path-1.png"))[:, :, ::-1]
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255


def whole_jobs(path: Path, device: torch.device, side: int, repeat: int) -> None:
    import spandrel
    from retouch.engine import Engine
    from retouch.engine.registry import ModelSpec

    img = photo(side, side)
    out_mp = (side * 4) ** 2 / 1e6
    print(f"\n== x4plus whole jobs on a {side}x{side} photo ({out_mp:.2f} MP out), numpy in and out, best of {repeat}")
    print(f"{'engine':44} {'s/out MP':>9} {'TFLOP/s':>8} {'vs chaiNNer':>11} {'tile':>5} {'PSNR vs fp32':>12}")
    desc = spandrel.ModelLoader(device=device).load_from_file(path).eval()
    base = chainner_style(desc, img, device=str(device))
    t_ref = best_of(repeat, lambda: chainner_style(desc, img, device=str(device)))
    print(f"{'chaiNNer-style loop (fp32 NCHW, 256 px tiles)':44} {t_ref / out_mp:9.4f} "
          f"{X4PLUS_TFLOP_PER_MP * out_mp / t_ref:8.1f} {1.0:10.2f}x {256:5} {'':>12}")
    precisions = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    for precision in precisions:
        engine = Engine(device=device.type, precision=precision)
        model = engine.get(ModelSpec("x4plus", path, False))
        out, info = engine.run(model, img)
        t = best_of(repeat, lambda: engine.run(model, img))  # noqa: B023
        print(f"{'Retouch engine, ' + model.dtype:44} {t / out_mp:9.4f} {X4PLUS_TFLOP_PER_MP * out_mp / t:8.1f} "
              f"{t_ref / t:10.2f}x {info.tile:5} {psnr(to_u8(out), to_u8(base)):12.2f}")


def builtin_models(device: torch.device, side: int, repeat: int) -> None:
    from retouch.engine import Engine
    from retouch.engine.registry import list_models

    img = photo(side, side)
    fast = "auto" if device.type == "cuda" else "bf16"  # auto on a GPU: fp16, else bf16 (DRUNet)
    print(f"\n== builtin models on {side}x{side}, seconds per output MP, best of {repeat}")
    print(f"{'model':22} {'fp32':>8} {'default':>8} {'(dtype)':>7} {'speed-up':>8} {'PSNR vs fp32':>12}")
    for spec in [s for s in list_models() if s.builtin]:
        times, outs, dtype = {}, {}, ""
        for precision in ("fp32", fast):
            engine = Engine(device=device.type, precision=precision)
            model = engine.get(spec)
            dtype = model.dtype
            cond = 15 / 255 if spec.condition == "noise_sigma" else None
            out, _ = engine.run(model, img, condition=cond)
            times[precision] = best_of(repeat, lambda: engine.run(model, img, condition=cond))  # noqa: B023
            outs[precision] = out
        mp = outs["fp32"].shape[0] * outs["fp32"].shape[1] / 1e6
        print(f"{spec.name:22} {times['fp32'] / mp:8.4f} {times[fast] / mp:8.4f} {dtype:>7} "
              f"{times['fp32'] / times[fast]:7.2f}x {psnr(to_u8(outs[fast]), to_u8(outs['fp32'])):12.2f}")


def vram(path: Path, device: torch.device, small: bool) -> list[dict[str, object]]:
    from retouch.engine import DEFAULT_VRAM_BUDGET, Engine
    from retouch.engine.registry import ModelSpec, list_models

    x2 = next(s for s in list_models() if s.name == "retouch-upscale-x2")
    x4plus = ModelSpec("x4plus", path, False)
    mps = (0.25, 0.5) if small else (6, 12, 24)
    cases = [(x2, mp, DEFAULT_VRAM_BUDGET) for mp in mps] + [(x2, mps[-1], 2 * GIB)]
    cases += [(x4plus, mps[0] / 3, DEFAULT_VRAM_BUDGET), (x4plus, mps[0] / 3, 2 * GIB)]
    print("\n== VRAM: peak allocated by a whole job (weights included), fp16")
    print(f"{'model':20} {'input':>14} {'MP':>6} {'budget GiB':>10} {'tile':>5} {'tiles':>5} {'peak GiB':>9} "
          f"{'seconds':>8}")
    rows = []
    for spec, mp, budget in cases:
        h = int(math.sqrt(mp * 1e6 * 2 / 3))
        w = int(h * 1.5)
        img = photo(h, w)
        engine = Engine(device=device.type, precision="fp16", vram_budget=budget)
        model = engine.get(spec)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        _, info = engine.run(model, img)
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else math.nan
        row = {"model": spec.name, "width": w, "height": h, "mp": round(w * h / 1e6, 1), "budget_gib": budget / GIB,
               "tile": info.tile, "tiles": info.tiles, "peak_gib": round(peak, 3), "seconds": round(seconds, 2)}
        rows.append(row)
        print(f"{spec.name:20} {f'{w}x{h}':>14} {row['mp']:6} {budget / GIB:10.1f} {info.tile:5} {info.tiles:5} "
              f"{peak:9.2f} {seconds:8.2f}")
        del engine, model, img
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--small", action="store_true", help="tiny sizes: check the script, not the machine")
    ap.add_argument("--json", type=Path, help="also write the VRAM rows here")
    ap.add_argument("--only", nargs="+", choices=("forward", "jobs", "builtin", "vram"), help="run these sections only")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py: no CUDA GPU here (use --device cpu --small for a dry run)")
    print(f"torch {torch.__version__}, device {card_peak(device)[0]}")
    side, reps, repeat = (64, 2, 1) if args.small else (512, 10, 2)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = x4plus_file(Path(tmp))
        sections = {
            "forward": lambda: forward_only(path, device, side, reps),
            "jobs": lambda: whole_jobs(path, device, side if args.small else 1024, repeat),
            "builtin": lambda: builtin_models(device, 128 if args.small else 1024, repeat),
            "vram": lambda: rows.extend(vram(path, device, args.small)),
        }
        for name, section in sections.items():
            if args.only and name not in args.only:
                continue
            try:
                section()
            except Exception as exc:  # one section's failure must not cost the others' figures
                print(f"\n{name} failed: {type(exc).__name__}: {exc}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
