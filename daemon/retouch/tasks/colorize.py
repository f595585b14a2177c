"""Colorize: a black-and-white (or sepia, or faded) photo in, plausible colours out, its lightness kept.

The input's CIELAB lightness L* is all the model sees (a sepia or colour input is reduced to it first), brought
down to at most `WORK_SIDE` px: colour is coarse, and the model was trained on whole scenes at low resolution. The
builtin model (training/train_colorize.py, a DRUNet) paints an RGB image of which only a* and b* are used, brought
back up to full size; the result is the input's full-resolution L* with those colours, the chroma shrunk where a
colour would fall outside sRGB, so L* stays the input's (within rounding). Its conditioning channel says how
colourful to be: `vividness` 1 asks for the chroma of a typical photo (`TYPICAL_CHROMA`, the median over the
training crops), 0 for none, 2 for twice that. Any RGB model spandrel loads can be the job's model (fed the gray
image); for those, `vividness` scales its colours.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..ops.lab import colourfulness, fit_chroma, gray_of, lightness, rgb_to_lab
from ..pixels import WorkImage, resize
from .base import ENSEMBLE, REVIEW, Param, Task, TaskContext, TaskResult, check_restorer, load_for, run_info, run_tiles

WORK_SIDE = 384  # px: the model runs on the image brought down to this longer side; a* b* come back up
TYPICAL_CHROMA = 22.7  # the median over 480 training crops of their mean CIELAB chroma (quartiles 15.0, 40.7)


class Colorize(Task):
    name = "colorize"
    label = "Colorize"
    description = "Give a black-and-white or sepia photo plausible colours; its lightness is kept."
    params = (Param("vividness", "float", 1.0, "how colourful: 1 = like a typical photo, 0 = gray, 2 = twice as "
                    "vivid", minimum=0.0, maximum=2.0), ENSEMBLE, REVIEW)

    def default_model(self, params: dict[str, Any]) -> str:
        return "retouch-colorize"

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        spec, model = load_for(ctx, self.default_model(params))
        check_restorer(spec, model)
        light = lightness(image.color)
        vividness = params["vividness"]
        condition = vividness * TYPICAL_CHROMA / 100 if model.condition == "chroma" else None
        h, w = light.shape
        factor = min(1.0, WORK_SIDE / max(h, w))  # colour is coarse: the model sees the scene small
        small = gray_of(light) if factor == 1.0 else resize(gray_of(light), round(w * factor), round(h * factor))
        out, run = run_tiles(ctx, model, small, "colorizing", params, condition)
        ab = rgb_to_lab(np.clip(out, 0, 1))[..., 1:]
        if factor < 1.0:
            ab = cv2.resize(ab.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float64)
        if condition is None:
            ab = ab * vividness
        rgb = fit_chroma(light, ab)
        ctx.progress(1.0, "done")
        chroma = float(np.hypot(*rgb_to_lab(rgb)[..., 1:].transpose(2, 0, 1)).mean())  # as delivered (fitted)
        info = dict(run_info(spec, run), vividness=vividness, mean_chroma=round(chroma, 2),
                    colourfulness=round(colourfulness(rgb), 2), adds_colour=True)
        return TaskResult(WorkImage(rgb, image.alpha, gray=False), info)
