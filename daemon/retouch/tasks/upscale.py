"""Super-resolution x2 / x4 with our builtin Compact models or any SR model spandrel or onnxruntime loads."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadRequest
from ..pixels import WorkImage, resize, resize_alpha
from .base import MODEL_TASK_PARAMS, Param, Task, TaskContext, TaskResult, load_for, run_info, run_tiles


class Upscale(Task):
    name = "upscale"
    label = "Upscale (super-resolution)"
    description = "Enlarge 2x or 4x, recovering detail a plain resize would blur."
    params = (Param("scale", "int", 2, "enlargement factor", choices=(2, 4)), *MODEL_TASK_PARAMS)

    def default_model(self, params: dict[str, Any]) -> str:
        return f"retouch-upscale-x{params['scale']}"

    def output_scale(self, params: dict[str, Any]) -> int:
        return int(params["scale"])

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        scale = params["scale"]
        spec, model = load_for(ctx, self.default_model(params))
        if model.scale < 2 or model.input_channels != 3 or model.output_channels != 3:
            raise BadRequest(f"model {spec.name} is not an RGB upscaler (scale {model.scale}, "
                             f"{model.input_channels} input and {model.output_channels} output channels)")
        if model.scale < scale or model.scale % scale:
            raise BadRequest(f"model {spec.name} upscales x{model.scale}; it cannot produce x{scale}")
        out, run = run_tiles(ctx, model, image.color, "upscaling", params)
        width, height = image.width * scale, image.height * scale
        if model.scale != scale:  # e.g. a x4 model asked for x2: run it, then area-downscale
            out = resize(out, width, height)
        alpha = None if image.alpha is None else resize_alpha(image.alpha, width, height)
        ctx.progress(1.0, "done")
        info = dict(run_info(spec, run), scale=scale)
        return TaskResult(WorkImage(np.ascontiguousarray(out, np.float32), alpha, image.gray), info)
