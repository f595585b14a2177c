"""One job, from raw frame to raw frame: what the daemon's worker runs, and what a Ray batch actor runs in-process.

Keeping this in one place is what makes `retouch batch --ray` give the same pixels as the daemon.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from .engine import Engine
from .engine.device import pick_device
from .pipeline import run_pipeline
from .pixels import array_to_frame, decode_image, decode_mask, encode_image, frame_to_array
from .protocol import ImageSpec, mask_spec
from .tasks import TaskContext, get_task


def process_frame(engine: Engine, task_name: str, spec: ImageSpec, frame: bytes, params: dict[str, Any], *,
                  mask_frame: bytes | None = None, model: str | None = None, tile: int | None = None,
                  device: str | None = None, progress: Callable[[float, str], None] = lambda f, s: None,
                  check_cancel: Callable[[], None] = lambda: None
                  ) -> tuple[ImageSpec, bytes, dict[str, Any], bytes | None]:
    """Run `task_name` (with already parsed `params`) on one frame; returns (spec, frame, info, review) of the result.

    `review` is the invention map as 8-bit gray at the result's size (0 = supported by the input, 255 = invented)
    when the job asked for it, else None; `info["review"]` then gives its size.
    """
    started = time.monotonic()
    progress(0.0, "decoding")
    image = decode_image(spec, frame)
    mask = decode_mask(mask_spec(spec.width, spec.height), mask_frame) if mask_frame else None
    task = get_task(task_name)
    ctx = TaskContext(engine, progress, check_cancel, model, tile, pick_device(device) if device else None)
    result = run_pipeline(task, ctx, image, mask, params)
    check_cancel()
    if result.unchanged:
        out_spec, out_frame = replace(spec, stride=0), array_to_frame(frame_to_array(spec, frame), spec.dtype)
    else:
        out_spec, out_frame = encode_image(result.image, spec)
    info = dict(result.info, task=task_name, params=params, seconds=round(time.monotonic() - started, 3),
                input_size=[spec.width, spec.height], output_size=[out_spec.width, out_spec.height])
    review = None
    if result.review is not None:
        review = np.round(result.review * 255).astype(np.uint8).tobytes()
        info["review"] = {"width": int(result.review.shape[1]), "height": int(result.review.shape[0])}
    return out_spec, out_frame, info, review
