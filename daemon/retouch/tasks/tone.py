"""Tone: automatic exposure and white balance alone (the same steps `auto_exposure` and `auto_white_balance` run
before any other task). No model."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadRequest
from ..ops.tone import auto_tone
from ..pixels import WorkImage
from .base import Param, Task, TaskContext, TaskResult


class Tone(Task):
    name = "tone"
    label = "Auto tone (exposure, white balance)"
    description = "Correct exposure from the luminance histogram and neutralise colour casts, highlights kept."
    params = (
        Param("exposure", "bool", True, "correct the exposure"),
        Param("white_balance", "bool", True, "neutralise the colour cast"),
    )

    def validate(self, ctx: TaskContext, params: dict[str, Any]) -> None:
        if ctx.model:
            raise BadRequest("task 'tone' uses no model; leave 'model' out")
        if not (params["exposure"] or params["white_balance"]):
            raise BadRequest("task 'tone' with exposure and white_balance both off has nothing to do")

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        ctx.progress(0.1, "analysing tone")
        color, info = auto_tone(image.color, params["exposure"], params["white_balance"])
        ctx.progress(1.0, "done")
        return TaskResult(WorkImage(color, image.alpha, image.gray), dict(info, model=None))
