"""Device and precision choice."""

from __future__ import annotations

import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


@functools.cache
def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 convolutions run several times faster than fp32 on such CPUs."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(requested: str = "auto") -> torch.device:
    if requested not in DEVICES:
        raise ValueError(f"device {requested!r} is not one of {', '.join(DEVICES)}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but no CUDA GPU is available to this daemon")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def pick_dtype(device: torch.device, precision: str, supports_half: bool, supports_bf16: bool) -> torch.dtype:
    """auto: fp16 (else bf16) on GPU where the model supports it; bf16 on CPUs with native bf16, else fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return torch.float32
    if precision == "fp16":
        return torch.float16 if supports_half and device.type == "cuda" else torch.float32
    if precision == "bf16":
        ok = supports_bf16 and (device.type == "cuda" or cpu_has_bf16())
        return torch.bfloat16 if ok else torch.float32
    if device.type == "cuda":
        if supports_half:
            return torch.float16
        return torch.bfloat16 if supports_bf16 else torch.float32
    # On CPUs with AVX-512 BF16 / AMX, bf16 runs 1.5-3.8x faster (benchmarks/speed.py) for a PSNR cost under
    # 0.05 dB against the original (x4plus: +0.03 dB; our models' outputs agree with fp32's at 51-58 dB).
    return torch.bfloat16 if supports_bf16 and cpu_has_bf16() else torch.float32


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return "cpu"
