"""One job from working image to working image: pre-processing, the task, post-processing, the selection.

    source -> [auto white balance, auto exposure] -> task (model) -> [text guard] -> [colour fix]
           -> strength blend with the source (lighter on faces) -> [grain] -> selection mask (outside it: the source)

Flags tell the editors where to look: every text region whose reading changed (`text_guard`; with `protect_text`
those regions keep the input, or its bicubic enlargement) and every face given the lighter touch (`face_strength`
below 1: faces are found on the task's input). They travel in the result's info as `flags`, boxes in result pixels.

The colour fix takes its reference from the task's input (after pre-processing, so it does not undo a white
balance the user asked for); strength and the selection blend with the untouched source, resized to the output
for upscaling. Strength 0 skips everything (model, pre-processing, grain): a same-size job then returns the source
frame bit for bit, an upscale the bicubic enlargement.
"""

from __future__ import annotations

from dataclasses import replace
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


AUTO_MODEL = "auto"  # a job's model "auto": route by content (see `_routing`)


def run_pipeline(task: Task, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None,
                 params: dict[str, Any]) -> TaskResult:
    auto = ctx.model == AUTO_MODEL
    if auto:  # routed by content: the task's own model, text kept safe, faces given the lighter touch
        ctx = replace(ctx, model=task.auto_model())
        if any(p.name == "protect_text" for p in task.params):
            params = dict(params, protect_text=True)
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
    review = result.review  # a task may know its own (restore: the pixels it repaired)
    if params.get("review") and review is None:
        def again(color: np.ndarray) -> np.ndarray:
            return task.run(ctx, WorkImage(color, None, work.gray), None, params).image.color

        review = invention_map(again, work.color, out)
    post: dict[str, Any] = {}
    flags: list[dict[str, Any]] = list(result.info.get("flags", []))  # a task's own (the faces it restored)
    if params.get("text_guard") or params.get("protect_text"):
        out, text = _guard_text(work.color, out, bool(params.get("protect_text")))
        flags += text
        post["text_guard"] = {"flagged": len(text), "protected": bool(params.get("protect_text"))}
    if params["color_fix"] != "none":
        out = color_fix(out, _at_size(work.color, out), params["color_fix"])
        post["color_fix"] = params["color_fix"]
    faces = _find_faces(work.color, out, mask) if params["face_strength"] < 1.0 else []
    face_model = None
    if auto and faces:  # faces to the face model the user installed, if any (on the task's result)
        out, face_model = _restore_faces(ctx, out, faces)
    # the source at the output's size, only when something blends with it (for upscaling it is a full resize)
    base = _at_size(image.color, out) if strength < 1.0 or mask is not None or faces else None
    if base is not None and (strength < 1.0 or faces):
        weight: Any = np.float32(strength)
        if faces:
            from .ops.faces import face_mask

            m = face_mask(out.shape[0], out.shape[1], faces)
            weight = (strength * (1.0 - m * (1.0 - params["face_strength"])))[:, :, None].astype(np.float32)
            on_face = round(strength * params["face_strength"], 3)
            flags = [f for f in flags if f.get("kind") != "face"]  # the task's face flags, now at the lighter touch
            by = f"{face_model}, " if face_model else ""
            flags += [dict(f.to_wire(), strength=on_face, label=f"face: {by}strength {on_face:g}") for f in faces]
            post["face_strength"] = params["face_strength"]
        out = base + weight * (out - base)
        if strength < 1.0:
            post["strength"] = strength
    if params["grain"] > 0.0:
        out = add_grain(out, params["grain"], params["grain_seed"])
        post["grain"] = params["grain"]
    if mask is not None and base is not None and not result.mask_consumed:
        m = np.clip(_at_size(mask, out), 0.0, 1.0)[:, :, None]
        out = out * m + base * (1.0 - m)
        post["selection"] = True
    info = dict(result.info)
    info.pop("flags", None)
    if flags:
        info["flags"] = flags
    if auto:
        info["routing"] = _routing(info.get("model"), flags, task.output_scale(params) > 1, face_model)
    if pre:
        info["pre"] = pre
    if post:
        info["post"] = post
    image_out = WorkImage(np.ascontiguousarray(out, dtype=np.float32), result.image.alpha, result.image.gray)
    return TaskResult(image_out, info, review=review)


def _restore_faces(ctx: TaskContext, out: np.ndarray, faces: list[Any]) -> tuple[np.ndarray, str | None]:
    """`model auto`: the faces of the result restored by the face model in the user's model folder (the first by
    name), aligned and pasted back as the face task does; the result unchanged and None when there is none."""
    from .errors import BadRequest
    from .tasks.base import check_restorer
    from .tasks.face import FACE_RESTORER, installed_face_model, restore_with_face_model

    spec = installed_face_model()
    if spec is None:
        return out, None
    model = ctx.engine.get(spec, ctx.device)
    if model.purpose != "FaceSR":
        raise BadRequest(f"model {spec.name} is recorded as a face model but is a {model.architecture} "
                         f"({model.purpose}); model auto sends faces to it: remove it or record it under another task")
    check_restorer(spec, model, FACE_RESTORER)
    restored, _, _ = restore_with_face_model(ctx, model, out, [f for f in faces if f.landmarks is not None])
    return restored, spec.name


def _routing(model: str | None, flags: list[dict[str, Any]], upscaled: bool,
             face_model: str | None = None) -> list[dict[str, Any]]:
    """Which model touched which region, for `model auto`: the whole image first, then the exceptions."""
    routes: list[dict[str, Any]] = [{"region": "image", "model": model}]
    for flag in flags:
        if flag["kind"] == "text":
            routes.append({"region": "text", "box": flag["box"], "model": "bicubic" if upscaled else "input"})
        elif flag["kind"] == "face":
            routes.append({"region": "face", "box": flag["box"], "model": face_model or model,
                           "strength": flag["strength"]})
    return routes


def _find_faces(source: np.ndarray, out: np.ndarray, mask: np.ndarray | None) -> list[Any]:
    """Faces of the task's input, in result pixels; those outside the selection are left out."""
    from .ops.faces import detect_faces, faces_within, scale_faces

    faces = detect_faces(source)
    if not faces:
        return []
    faces = scale_faces(faces, out.shape[1] / source.shape[1])
    return faces_within(faces, None if mask is None else _at_size(mask, out))


def _guard_text(source: np.ndarray, out: np.ndarray, protect: bool) -> tuple[np.ndarray, list[dict[str, Any]]]:
    from .ops.textguard import protect_text, text_flags

    found = text_flags(source, out)
    if protect and found:
        out = protect_text(source, out, found)
    verb = "kept as the input" if protect else "check it"
    return out, [dict(f.to_wire(), label=f"text \"{f.before}\" reads \"{f.after}\": {verb}") for f in found]


def _source_only(task: Task, image: WorkImage, params: dict[str, Any]) -> TaskResult:
    scale = task.output_scale(params)
    info = {"model": None, "post": {"strength": 0.0}}
    if scale == 1:
        return TaskResult(image, info, unchanged=True)
    w, h = image.width * scale, image.height * scale
    alpha = None if image.alpha is None else resize_alpha(image.alpha, w, h)
    return TaskResult(WorkImage(resize(image.color, w, h), alpha, image.gray), info)
