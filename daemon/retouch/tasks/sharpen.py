"""Sharpen: recover defocus and camera-shake blur, without halos.

The builtin model is a DRUNet (a U-Net of residual blocks whose receptive field spans camera shake) whose extra
input channel is a blur hint: `auto` (blind), `defocus` or `motion`. It was trained on both kinds of blur with
mild noise, half the time with the true hint and half blind. Models without a hint channel run with `auto` only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadRequest
from ..pixels import WorkImage
from .base import MODEL_TASK_PARAMS, Param, Task, TaskContext, TaskResult, check_restorer, load_for, run_info, run_tiles

BLUR_HINTS = {"auto": 0.0, "defocus": 0.25, "motion": 0.5}  # values of the builtin model's conditioning channel


class Sharpen(Task):
    name = "sharpen"
    label = "Sharpen / deblur"
    description = "Recover defocus and camera-shake blur without halos."
    params = (Param("blur", "str", "auto", "kind of blur, when known", choices=tuple(BLUR_HINTS)), *MODEL_TASK_PARAMS)

    def default_model(self, params: dict[str, Any]) -> str:
        return "retouch-sharpen"

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        spec, model = load_for(ctx, self.default_model(params))
        check_restorer(spec, model)
        if model.condition == "blur_hint":
            condition: float | None = BLUR_HINTS[params["blur"]]
        elif params["blur"] != "auto":
            raise BadRequest(f"model {spec.name} ({model.architecture}) takes no blur hint; use blur auto")
        else:
            condition = None
        out, run = run_tiles(ctx, model, image.color, "sharpening", params, condition)
        ctx.progress(1.0, "done")
        info = dict(run_info(spec, run), blur=params["blur"])
        return TaskResult(WorkImage(np.ascontiguousarray(out, np.float32), image.alpha, image.gray), info)
