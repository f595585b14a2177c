"""Sharpen: recover defocus and camera-shake blur, without halos.

The builtin model is a DRUNet (a U-Net of residual blocks whose receptive field spans camera shake) whose extra
input channel is a blur hint: `auto` (blind), `defocus` or `motion`. It was trained on both kinds of blur with
mild noise, half the time with the true hint and half blind. Models without a hint channel run with `auto` only.

`blur=motion` with the builtin sharpener also estimates the camera shake's kernel from the picture, deconvolves with
it and mixes that into the blind sharpener's result as far as a gate predicts a gain (`ops/shake.py`).

`blur_trace` (x,y,w,h of a small region around one blurred point of light) takes the blur kernel from the picture
itself and deconvolves the whole image with it, the denoiser as the prior (`ops/deconvolve.py`), instead of running
the sharpening model: far stronger where the blur is one camera shake over the whole frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import RunInfo
from ..engine.registry import resolve
from ..errors import BadRequest
from ..ops import shake as shake_ops
from ..ops.deconvolve import deconvolve, kernel_from_trace, parse_trace_box
from ..ops.noise import estimate_sigma
from ..pixels import WorkImage
from .base import MODEL_TASK_PARAMS, Param, Task, TaskContext, TaskResult, check_restorer, load_for, run_info, run_tiles

BLUR_HINTS = {"auto": 0.0, "defocus": 0.25, "motion": 0.5}  # values of the builtin model's conditioning channel
DENOISER = "retouch-denoise"  # the deconvolution's prior
CLIPPED = 254.5 / 255  # a trace pixel this bright (any channel) has lost its true value at white


class Sharpen(Task):
    name = "sharpen"
    label = "Sharpen / deblur"
    description = "Recover defocus and camera-shake blur without halos."
    params = (Param("blur", "str", "auto", "kind of blur, when known (motion: the camera shake is estimated from the "
                    "picture and its deconvolution mixed in, slower)", choices=tuple(BLUR_HINTS)),
              Param("blur_trace", "str", "", "x,y,w,h (px) of a small region around one blurred point of light: its "
                    "trace is the blur kernel, and the image is deconvolved with it (empty: the sharpening model)"),
              *MODEL_TASK_PARAMS)

    def default_model(self, params: dict[str, Any]) -> str:
        return "retouch-sharpen"

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        if params["blur_trace"]:
            return self.deconvolve(ctx, image, params)
        spec, model = load_for(ctx, self.default_model(params))
        check_restorer(spec, model)
        # --blur motion with the builtin sharpener: the shake estimated and deconvolved, mixed into the blind
        # sharpener's result (the blind net under the gate; its motion hint measured no better than blind)
        estimate = (params["blur"] == "motion" and spec.name == self.default_model(params)
                    and min(image.color.shape[:2]) >= shake_ops.MIN_SIDE)
        if model.condition == "blur_hint":
            condition: float | None = BLUR_HINTS["auto" if estimate else params["blur"]]
        elif params["blur"] != "auto":
            raise BadRequest(f"model {spec.name} ({model.architecture}) takes no blur hint; use blur auto")
        else:
            condition = None
        out, run = run_tiles(ctx, model, image.color, "sharpening", params, condition,
                             span=(0.05, 0.4) if estimate else (0.05, 0.95))
        info = dict(run_info(spec, run), blur=params["blur"])
        if estimate:
            out, info["shake"] = self.mix_shake(ctx, image.color, out)
        ctx.progress(1.0, "done")
        return TaskResult(WorkImage(np.ascontiguousarray(out, np.float32), image.alpha, image.gray), info)

    def mix_shake(self, ctx: TaskContext, color: np.ndarray, sharpened: np.ndarray) -> tuple[np.ndarray, dict]:
        """The shake's kernel estimated from the picture, the picture deconvolved with it, and mixed into the
        sharpener's result as far as the gate predicts a gain (`ops/shake.py`)."""
        ctx.progress(0.42, "estimating the shake")
        prior = Prior(ctx, DENOISER, (0.45, 0.95))  # the request's model is the sharpener
        noise = estimate_sigma(color)
        return shake_ops.mix_with_deconvolution(
            color, sharpened, noise, lambda kernel: deconvolve(color, kernel, noise, prior.denoise, prior.on_step))

    def deconvolve(self, ctx: TaskContext, image: WorkImage, params: dict[str, Any]) -> TaskResult:
        """The image deconvolved by the kernel its blur trace draws, a noise-conditioned denoiser as the prior."""
        box = parse_trace_box(params["blur_trace"], image.color.shape)
        kernel = kernel_from_trace(image.color, box)
        ctx.progress(0.0, "loading model")
        prior = Prior(ctx, ctx.model or DENOISER, (0.05, 0.95))
        ctx.progress(0.02, "estimating noise")
        noise = estimate_sigma(image.color)
        out = deconvolve(image.color, kernel, noise, prior.denoise, prior.on_step)
        ctx.progress(1.0, "done")
        info = dict(run_info(prior.spec, prior.runs[-1]), blur="trace", blur_trace=list(box),
                    kernel_size=kernel.shape[0], noise_level=round(noise * 255, 2), iterations=len(prior.runs))
        x, y, w, h = box
        clipped = int((image.color[y:y + h, x:x + w].max(axis=2) >= CLIPPED).sum())
        if clipped:
            info["note"] = (f"the light is clipped at white in {clipped} px of the blur trace: the kernel is flatter "
                            "there than the shake was; a fainter light gives a truer one")
        return TaskResult(WorkImage(out, image.alpha, image.gray), info)


class Prior:
    """The deconvolution's prior: a noise-conditioned denoiser (`name`), with progress across `span` and cancellation
    between its runs."""

    def __init__(self, ctx: TaskContext, name: str, span: tuple[float, float]) -> None:
        self.ctx, self.span = ctx, span
        self.spec = resolve(name)
        self.model = ctx.engine.get(self.spec, ctx.device)
        if self.model.condition != "noise_sigma":
            raise BadRequest(f"blur_trace deconvolves with a noise-level-conditioned denoiser as the prior (such as "
                             f"retouch-denoise); model {self.spec.name} ({self.model.architecture}) is not one")
        self.runs: list[RunInfo] = []

    def denoise(self, x: np.ndarray, sigma: float) -> np.ndarray:
        self.ctx.check_cancel()
        out, run = self.ctx.engine.run(self.model, x, tile=self.ctx.tile, condition=sigma * self.spec.condition_scale)
        self.runs.append(run)
        return out

    def on_step(self, done: int, total: int) -> None:
        self.ctx.progress(self.span[0] + (self.span[1] - self.span[0]) * done / total,
                          f"deconvolving, step {done}/{total}")
