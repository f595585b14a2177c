"""Faces: find every face, restore it, and blend it back through a feathered mask; the rest stays the input.

Faces are found on the task's input by MTCNN (`ops/faces.py`, with five landmarks each). What restores them:

- **Face models** that spandrel loads (its `FaceSR` purpose: GFPGAN, RestoreFormer, CodeFormer), given with
  `model`: each face is aligned by its landmarks onto FFHQ's 512 px template, restored there, and mapped back
  (`ops/facealign.py`), blended through a mask that fades out before the aligned crop's edges.
- **Same-size restoration models**; the default is our own face-region enhancer: the face's region (its box grown
  by `CONTEXT` of its size on every side, so the nets see around it) is denoised by `retouch-denoise` at the noise
  level estimated on the whole image, then deblurred by `retouch-sharpen` (blind), at the face's own resolution,
  and blended back through the face's ellipse, feathered outward (`ops.faces.face_mask`). A restoration model the
  user gives (`model`) replaces both.

The review map is the blend weight: every pixel in it came from the face restorer. Each face restored is a flag.
With a selection, only faces whose centre lies in it are restored. No face found: the result is the input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..engine import LoadedModel
from ..engine.registry import ModelSpec
from ..ops.noise import estimate_sigma
from ..pixels import WorkImage
from .base import REVIEW, Task, TaskContext, TaskResult, check_restorer, load_for, run_info

DENOISER = "retouch-denoise"
SHARPENER = "retouch-sharpen"
CONTEXT = 0.5  # of the face box's larger side: context read around each face by a restoration model
FACE_SIZE = 512  # side of the aligned crop a face model works on
FACE_RESTORER = "an RGB 512 px face restorer"
RESTORER = "a same-size RGB restoration model"
SEED = 0  # GFPGAN's decoder draws noise: seeded, so a rerun gives the same faces
NEUTRAL = 1.5 / 255  # channels this close everywhere: the photo is black and white
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # Rec. 601, as a gray photo's channels were made


class Face(Task):
    name = "face"
    label = "Restore faces"
    description = "Find the faces and restore each one (deblur, denoise; or a face model such as GFPGAN); the rest "\
                  "of the image is left as it is."
    params = (REVIEW,)
    defaults = {"face_strength": 1.0}  # the task touches faces only: the lighter touch would halve its work

    def default_model(self, params: dict[str, Any]) -> str:
        return SHARPENER

    def auto_model(self) -> str | None:
        """`model auto`: the face model the user installed, if any."""
        spec = installed_face_model()
        return spec.name if spec else None

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        from ..ops.faces import detect_faces, faces_within

        spec, model = load_for(ctx, SHARPENER)
        face_model = model.purpose == "FaceSR"
        check_restorer(spec, model, FACE_RESTORER if face_model else
                       f"a face model (GFPGAN, RestoreFormer, CodeFormer) or {RESTORER}")
        ctx.progress(0.05, "finding faces")
        faces = faces_within(detect_faces(image.color), mask)
        info: dict[str, Any] = {"model": spec.name, "device": model.device_name, "dtype": model.dtype,
                                "faces": [face_info(f) for f in faces]}
        if not faces:
            ctx.progress(1.0, "no face found")
            info["note"] = "no face found: the image is unchanged"
            nothing = np.zeros(image.color.shape[:2], np.float32)
            return TaskResult(image, info, review=nothing if params["review"] else None)
        if face_model:
            out, weight, run = restore_with_face_model(ctx, model, image.color, faces)
        else:
            out, weight, run, extra = self._with_restorers(ctx, spec, model, image.color, faces)
            info.update(extra)
        info.update({k: v for k, v in run_info(spec, run).items() if k != "model"})
        info["flags"] = [dict(f.to_wire(), strength=1.0, label=f"face restored by {spec.name}") for f in faces]
        ctx.progress(1.0, "done")
        return TaskResult(WorkImage(np.ascontiguousarray(out, np.float32), image.alpha, image.gray), info,
                          review=weight if params["review"] else None)

    def _with_restorers(self, ctx: TaskContext, spec: ModelSpec, model: LoadedModel, color: np.ndarray,
                        faces: list[Any]) -> tuple[np.ndarray, np.ndarray, Any, dict[str, Any]]:
        from ..ops.faces import Face as Found
        from ..ops.faces import face_mask

        extra: dict[str, Any] = {}
        denoiser = None
        if ctx.model is None:  # the default chain: our denoiser first, at the level the whole image shows
            dspec, denoiser = load_for(ctx, DENOISER)
            check_restorer(dspec, denoiser)
            sigma = estimate_sigma(color)
            extra["noise_level_estimated"] = round(sigma * 255, 2)
            extra["models"] = [dspec.name, spec.name]
        h, w = color.shape[:2]
        out, weight, run = color.copy(), np.zeros((h, w), np.float32), None
        for i, face in enumerate(faces):
            ctx.check_cancel()
            ctx.progress(0.1 + 0.85 * i / len(faces), f"restoring face {i + 1}/{len(faces)}")
            x0, y0, x1, y1 = face.box
            grow = round(CONTEXT * max(x1 - x0, y1 - y0))
            gx0, gy0, gx1, gy1 = max(0, x0 - grow), max(0, y0 - grow), min(w, x1 + grow), min(h, y1 + grow)
            region = color[gy0:gy1, gx0:gx1]
            if denoiser is not None:
                region, _ = ctx.engine.run(denoiser, region, tile=ctx.tile, condition=sigma * dspec.condition_scale)
            restored, run = ctx.engine.run(model, region, tile=ctx.tile)  # a blur-hint model runs blind
            local = Found((x0 - gx0, y0 - gy0, x1 - gx0, y1 - gy0), face.score)  # the face in the region's pixels
            m = face_mask(gy1 - gy0, gx1 - gx0, [local])
            target = out[gy0:gy1, gx0:gx1]
            out[gy0:gy1, gx0:gx1] = target + m[:, :, None] * (restored - target)
            np.maximum(weight[gy0:gy1, gx0:gx1], m, out=weight[gy0:gy1, gx0:gx1])
        return out, weight, run, extra


def restore_with_face_model(ctx: TaskContext, model: LoadedModel, color: np.ndarray,
                            faces: list[Any]) -> tuple[np.ndarray, np.ndarray, Any]:
    """Each face (with landmarks) aligned onto the 512 px template, restored by the face model, pasted back into
    a copy of `color`; returns it, the blend weight (H x W, the largest over the faces) and the last run's info."""
    from ..ops.facealign import align_face, align_matrix, paste_face

    out, weight, run = color, np.zeros(color.shape[:2], np.float32), None
    gray = bool(np.ptp(color, axis=2).max() < NEUTRAL)  # a black-and-white photo: its faces stay gray
    for i, face in enumerate(faces):
        ctx.check_cancel()
        ctx.progress(0.1 + 0.85 * i / len(faces), f"restoring face {i + 1}/{len(faces)}")
        matrix = align_matrix(face.landmarks, FACE_SIZE)
        crop = align_face(color, matrix, FACE_SIZE)
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(SEED)
            restored, run = ctx.engine.run(model, crop, tile=FACE_SIZE)
        if gray:  # face models paint skin tones even on gray faces: keep the photo's own (lack of) colour
            restored = np.repeat(restored @ LUMA[:, None], 3, axis=2).astype(np.float32)
        out, w = paste_face(out, restored, matrix)
        np.maximum(weight, w, out=weight)
    return out, weight, run


def installed_face_model() -> ModelSpec | None:
    """The first (by name) face model in the user's model folder (`retouch models add` records FaceSR models as
    task face), for `model auto`; None when there is none."""
    from ..engine.registry import list_models

    found = sorted((s for s in list_models() if s.task == "face"), key=lambda s: s.name)
    return found[0] if found else None


def face_info(face: Any) -> dict[str, Any]:
    """What `--json` reports of a face: its box, score and landmarks (image pixels)."""
    marks = None if face.landmarks is None else [[round(x, 1), round(y, 1)] for x, y in face.landmarks]
    return dict(face.to_wire(), landmarks=marks)


__all__ = ["FACE_RESTORER", "Face", "face_info", "installed_face_model", "restore_with_face_model"]
