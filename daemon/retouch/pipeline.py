"""One job from working image to working image: pre-processing, the task, post-processing, the selection.

    source -> [auto white balance, auto exposure] -> task (model) -> [colour fix] -> strength blend with the source
           -> [grain] -> selection mask (outside it: the source)

The colour fix takes its reference from the task's input (after pre-processing, so it does not undo a white
balance the user asked for); strength and the selection blend with the untouched source, resized to the output
for upscaling. Strength 0 skips everything (model, pre-processing, grain): a same-size job then returns the source
frame bit for bit, an upscale the bicubic enlargement.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .ops.colorfix import color_fix
from .ops.grain import add_grain
from .ops.review import invention_map
from .ops.tone import auto_tone
from .pixels import WorkImage, resize, resize_alpha
from .tasks.base import Task, TaskContext, TaskResult


def _at_size(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    if x.shape[:2] == like.shape[:2]:
        return x
    return resize(x, like.shape[1], like.shape[0])


def run_pipeline(task: Task, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None,
                 params: dict[str, Any]) -> TaskResult:
    task.validate(ctx, params)
    strength = params["strength"]
    if strength == 0.0:
        return _source_only(task, image, params)
    work, pre = image, {}
    if params["auto_exposure"] or params["auto_white_balance"]:
        color, pre = auto_tone(image.color, params["auto_exposure"], params["auto_white_balance"])
        work = WorkImage(color, image.alpha, image.gray)
    result = task.run(ctx, work, mask, params)
    out = result.image.color
    review = None
    if params.get("review"):
        def again(color: np.ndarray) -> np.ndarray:
            return task.run(ctx, WorkImage(color, None, work.gray), None, params).image.color

        review = invention_map(again, work.color, out)
    post: dict[str, Any] = {}
    if params["color_fix"] != "none":
        out = color_fix(out, _at_size(work.color, out), params["color_fix"])
        post["color_fix"] = params["color_fix"]
    # the source at the output's size, only when something blends with it (for upscaling it is a full resize)
    base = _at_size(image.color, out) if strength < 1.0 or mask is not None else None
    if base is not None and strength < 1.0:
        out = base + np.float32(strength) * (out - base)
        post["strength"] = strength
    if params["grain"] > 0.0:
        out = add_grain(out, params["grain"], params["grain_seed"])
        post["grain"] = params["grain"]
    if mask is not None and base is not None:
        m = np.clip(_at_size(mask, out), 0.0, 1.0)[:, :, None]
        out = out * m + base * (1.0 - m)
        post["selection"] = True
    info = dict(result.info)
    if pre:
        info["pre"] = pre
    if post:
        info["post"] = post
    image_out = WorkImage(np.ascontiguousarray(out, dtype=np.float32), result.image.alpha, result.image.gray)
    return TaskResult(image_out, info, review=review)


def _source_only(task: Task, image: WorkImage, params: dict[str, Any]) -> TaskResult:
    scale = task.output_scale(params)
    info = {"model": None, "post": {"strength": 0.0}}
    if scale == 1:
        return TaskResult(image, info, unchanged=True)
    w, h = image.width * scale, image.height * scale
    alpha = None if image.alpha is None else resize_alpha(image.alpha, w, h)
    return TaskResult(WorkImage(resize(image.color, w, h), alpha, image.gray), info)
