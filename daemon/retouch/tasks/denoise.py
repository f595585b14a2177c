"""Denoise: sensor noise (luminance and colour, Gaussian and signal-dependent) removed, texture kept.

The builtin model is a small DRUNet conditioned on the noise level; `noise_level` is the standard deviation of
the noise on the 0..255 scale of 8-bit sRGB values, or `auto` to estimate it from the image (patch PCA, see
`ops/noise.py`). Blind models loaded by the user (SCUNet, NAFNet...) work with `auto` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadRequest
from ..ops.noise import estimate_sigma
from ..pixels import WorkImage
from .base import MODEL_TASK_PARAMS, Param, Task, TaskContext, TaskResult, check_restorer, load_for, run_info, run_tiles


class Denoise(Task):
    name = "denoise"
    label = "Denoise"
    description = "Remove sensor noise (luminance and colour) without smearing texture."
    params = (Param("noise_level", "float", "auto", "noise standard deviation on the 0..255 scale, or auto",
                    minimum=0.0, maximum=50.0, allow_auto=True), *MODEL_TASK_PARAMS)

    def default_model(self, params: dict[str, Any]) -> str:
        return "retouch-denoise"

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        spec, model = load_for(ctx, self.default_model(params))
        check_restorer(spec, model)
        level = params["noise_level"]
        info: dict[str, Any] = {}
        if model.condition == "noise_sigma":
            if level == "auto":
                ctx.progress(0.02, "estimating noise")
                sigma = estimate_sigma(image.color)
                info["noise_level_estimated"] = round(sigma * 255, 2)
            else:
                sigma = float(level) / 255
            condition: float | None = sigma * spec.condition_scale
            info["noise_level"] = round(sigma * 255, 2)
        elif level != "auto":
            raise BadRequest(f"model {spec.name} ({model.architecture}) takes no noise level; use noise_level auto")
        else:
            condition = None
        out, run = run_tiles(ctx, model, image.color, "denoising", params, condition)
        ctx.progress(1.0, "done")
        return TaskResult(WorkImage(np.ascontiguousarray(out, np.float32), image.alpha, image.gray),
                          dict(run_info(spec, run), **info))
