"""Super-resolution x2 / x4 with our builtin Compact models or any SR model spandrel or onnxruntime loads."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..engine.registry import resolve
from ..errors import BadRequest
from ..pixels import WorkImage
from .base import Param, Task, TaskContext, TaskResult


def resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width < x.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(x, (width, height), interpolation=interp)


class Upscale(Task):
    name = "upscale"
    label = "Upscale (super-resolution)"
    description = "Enlarge 2x or 4x, recovering detail a plain resize would blur."
    params = (Param("scale", "int", 2, "enlargement factor", choices=(2, 4)),)

    def default_model(self, params: dict[str, Any]) -> str:
        return f"retouch-upscale-x{params['scale']}"

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        scale = params["scale"]
        spec = resolve(ctx.model or self.default_model(params))
        ctx.progress(0.0, "loading model")
        model = ctx.engine.get(spec, ctx.device)
        if model.scale < 2 or model.input_channels != 3 or model.output_channels != 3:
            raise BadRequest(f"model {spec.name} is not an RGB upscaler (scale {model.scale}, "
                             f"{model.input_channels} input and {model.output_channels} output channels)")
        if model.scale < scale or model.scale % scale:
            raise BadRequest(f"model {spec.name} upscales x{model.scale}; it cannot produce x{scale}")

        def on_tile(done: int, total: int) -> None:
            ctx.check_cancel()
            ctx.progress(0.05 + 0.9 * done / total, f"upscaling tile {done}/{total}")

        ctx.check_cancel()
        out, run = ctx.engine.run(model, image.color, tile=ctx.tile, on_tile=on_tile)
        width, height = image.width * scale, image.height * scale
        if model.scale != scale:  # e.g. a x4 model asked for x2: run it, then area-downscale
            out = resize(out, width, height)
        if mask is not None:
            m = np.clip(resize(mask, width, height), 0, 1)[:, :, None]
            out = out * m + resize(image.color, width, height) * (1 - m)
        alpha = None
        if image.alpha is not None:
            alpha = resize(image.alpha, width, height)
            alpha = np.clip(alpha, 0.0, max(1.0, float(image.alpha.max())))
        ctx.progress(1.0, "done")
        info = {"model": spec.name, "device": run.device, "dtype": run.dtype, "tile": run.tile, "tiles": run.tiles,
                "oom_retries": run.retries, "scale": scale}
        return TaskResult(WorkImage(np.ascontiguousarray(out, np.float32), alpha, image.gray), info)
