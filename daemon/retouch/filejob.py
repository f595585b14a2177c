"""Image files in, image files out: what `retouch enhance` and `retouch batch` (local or on Ray) do around a job.

`enhance_file` reads, converts to a wire frame, hands the frame to a runner (the daemon, or an in-process engine in
a Ray actor), and writes the result atomically with the input's ICC profile. `plan_batch` decides which files of a
folder are done, skipped (their output exists) or refused (two inputs with the same output name).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ImageError
from .imageio import SUPPORTED_SUFFIXES, LoadedImage, read_image, write_image
from .pixels import NUMPY_DTYPES, frame_to_array, spec_for_array
from .protocol import ImageSpec

Runner = Callable[[bytes, ImageSpec], tuple[ImageSpec, bytes, dict[str, Any]]]


def to_wire(img: LoadedImage) -> tuple[np.ndarray, bool]:
    """RGB(A)/GRAY array for the wire; gray+alpha travels as RGBA (returns whether to fold it back)."""
    px = img.pixels
    if px.ndim == 3 and px.shape[2] == 2:
        gray, alpha = px[:, :, :1], px[:, :, 1:]
        return np.concatenate([gray, gray, gray, alpha], axis=2), True
    return px, False


def from_wire(arr: np.ndarray, fold_gray_alpha: bool) -> np.ndarray:
    if fold_gray_alpha:
        gray = arr[:, :, :3].astype(np.float32).mean(axis=2, keepdims=True)
        return np.concatenate([gray.round().astype(arr.dtype) if arr.dtype.kind == "u" else gray.astype(arr.dtype),
                               arr[:, :, 3:]], axis=2)
    return arr


def check_output(path: Path) -> None:
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ImageError(f"{path}: cannot write '{path.suffix or 'no extension'}' files "
                         f"(use one of {', '.join(SUPPORTED_SUFFIXES)})")
    if not path.parent.is_dir():
        raise ImageError(f"{path}: the folder {path.parent} does not exist")


def read_mask(path: Path, width: int, height: int) -> bytes:
    """A mask file as the wire's u8 mask frame (0 = leave, 255 = work): a grayscale image (8 or 16 bit, or float)
    the size of the input. Anything else is refused with what was wrong."""
    img = read_image(path)
    px = img.pixels
    if px.ndim == 3 and px.shape[2] != 1:
        kind = {2: "grayscale with alpha", 3: "RGB", 4: "RGBA"}.get(px.shape[2], f"{px.shape[2]}-channel")
        raise ImageError(f"{path}: a mask must be a grayscale image (one channel), this one is {kind}")
    h, w = px.shape[:2]
    if (w, h) != (width, height):
        raise ImageError(f"{path}: the mask is {w}x{h}, the image {width}x{height}; they must be the same size")
    gray = px.reshape(h, w)
    if gray.dtype == np.uint8:
        return np.ascontiguousarray(gray).tobytes()
    top = 65535.0 if gray.dtype == np.uint16 else 1.0
    return np.clip(np.round(gray.astype(np.float32) / top * 255), 0, 255).astype(np.uint8).tobytes()


# what some tasks add to their result's info, passed on when present: sharpen's blur (`trace` with a blur trace), the
# trace's kernel size and noise level, and --blur motion's shake estimate
TASK_DETAILS = ("blur", "kernel_size", "noise_level", "shake")


def enhance_file(src: Path, dst: Path, task: str, run: Runner) -> dict[str, Any]:
    started = time.monotonic()
    check_output(dst)
    img = read_image(src)
    arr, fold = to_wire(img)
    spec = spec_for_array(arr)
    out_spec, out_frame, info = run(np.ascontiguousarray(arr).tobytes(), spec)
    out = frame_to_array(out_spec, out_frame)
    out = out.astype(NUMPY_DTYPES[out_spec.dtype].newbyteorder("="), copy=False)
    # a task that adds colour (colorize says so) turns a gray photo into RGB(A), which a gray profile cannot tag
    coloured = bool(info.get("adds_colour"))
    icc = None if coloured and (fold or spec.order == "GRAY") else img.icc_profile
    write_image(dst, from_wire(out, fold and not coloured), icc)
    summary = {
        "input": str(src),
        "output": str(dst),
        "task": info.get("task", task),
        "model": info.get("model"),
        "device": info.get("device"),
        "dtype": info.get("dtype"),
        "params": info.get("params"),
        "seconds": round(time.monotonic() - started, 3),
        "daemon_seconds": info.get("seconds"),
        "input_size": info.get("input_size"),
        "output_size": info.get("output_size"),
        "tiles": info.get("tiles"),
        "flags": info.get("flags", []),
        "faces": info.get("faces"),  # --task face: every face found (box, score, landmarks)
        "note": info.get("note"),
    }
    summary.update({key: info[key] for key in TASK_DETAILS if key in info})
    return summary


@dataclass
class BatchPlan:
    out_dir: Path
    jobs: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output) still to do
    records: list[dict[str, Any]] = field(default_factory=list)  # skipped and refused files
    skipped: int = 0


def plan_batch(in_dir: Path, out_dir: Path, fmt: str | None, done: set[str] | None = None) -> BatchPlan:
    """Which inputs to enhance into which outputs; existing outputs (and inputs in `done`) are skipped."""
    if not in_dir.is_dir():
        raise ImageError(f"{in_dir}: not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in in_dir.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise ImageError(f"{in_dir}: no PNG, JPEG or TIFF files in this folder")
    plan = BatchPlan(out_dir)
    claimed: dict[Path, Path] = {}
    for src in files:
        dst = out_dir / (src.stem + (f".{fmt.lstrip('.')}" if fmt else src.suffix))
        if dst in claimed:
            message = f"same output {dst.name} as {claimed[dst].name}; rename one of them"
            plan.records.append({"input": str(src), "error": message, "code": "bad_image"})
            continue
        claimed[dst] = src
        if dst.exists() or (done is not None and str(src) in done):
            plan.skipped += 1
            plan.records.append({"input": str(src), "output": str(dst), "skipped": True})
            continue
        plan.jobs.append((src, dst))
    return plan
