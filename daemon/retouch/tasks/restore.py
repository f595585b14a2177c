"""Restore old photos: find scratches, dust, hairs, blotches and water stains by themselves, then fill them in.

Two builtin nets of ours (training/train_restore.py), both DRUNets that spandrel loads and the engine tiles.
`retouch-damage` maps the photo to a damage map (a pixel is damaged where the map exceeds `CUT` + 0.5 -
`sensitivity`). `retouch-inpaint` takes the photo and the mask to fill (the damage grown by `grow` px) as its
conditioning plane and returns the repaired photo, refining OpenCV Telea's fill of the mask (texture and edges
carried through, where Telea leaves a smooth smear). The fill is used inside the mask only, with a feathered edge
of 2 px; every other pixel is the input. `inpainter telea` fills with OpenCV's classical fast marching instead;
an inpainting model spandrel loads (LaMa) can be the job's model.

The job's mask (from the editors, the selection): with `mask_is area` (the default) it bounds where damage is
looked for and repaired, as it bounds every task; with `mask_is damage` it marks damage by hand: it is repaired as
given, and detection adds what it finds elsewhere (with `detect` off, only the mask is repaired).

`review`: the review map is the mask of the pixels repaired (white), every one of them invented; a feathered rim
of 2 px beside it blends the fill with the input. Faces keep the full repair by default (`face_strength` 1): a
half-removed scratch helps nobody.

`text_guard` / `protect_text`: a fill can take a stroke of a letter for a scratch and erase it (a "1" on a sign is
a thin bright line); the guard reads the text the repair touched before and after and flags what reads
differently, and `protect_text` leaves those lines as they were. Only the repaired regions are searched for text
(`textguard.changed_windows`), so on a large photo with a few scratches the guard costs a fraction of what it costs
after an upscale.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine import LoadedModel
from ..engine.registry import ModelSpec, resolve
from ..errors import BadRequest
from ..ops.inpaint import feather, grow, telea
from ..pixels import WorkImage
from .base import PROTECT_TEXT, REVIEW, TEXT_GUARD, Param, Task, TaskContext, TaskResult, load_for, run_info, run_tiles

DETECTOR = "retouch-damage"
INPAINTER = "retouch-inpaint"
CUT = 0.6  # the damage map's threshold at sensitivity 0.5: the best pooled IoU on validation crops of the training
# photos (training/calibrate_damage.py); each 0.1 of sensitivity above 0.5 lowers it by 0.1
THRESHOLDS = (0.02, 0.98)  # the cut stays inside these, whatever the sensitivity


class Restore(Task):
    name = "restore"
    label = "Restore (scratches, dust, stains)"
    description = "Find scratches, dust, hairs, blotches and stains on old photos, then fill them in."
    params = (
        Param("detect", "bool", True, "find the damage automatically (off: repair only the damage mask you give)"),
        Param("sensitivity", "float", 0.5, "how readily a pixel counts as damaged: higher finds fainter damage "
              "(and more false spots)", minimum=0.0, maximum=1.0),
        Param("grow", "int", 2, "px added around every damaged spot before it is filled", minimum=0, maximum=16),
        Param("inpainter", "str", "model", "what fills the damage: the model, or telea (OpenCV's classical fast "
              "marching)", choices=("model", "telea")),
        Param("mask_is", "str", "area", "what a mask (the selection) means: the area to work in, or damage marked "
              "by hand (repaired as given, detection adds to it)", choices=("area", "damage")),
        Param("ensemble", "bool", False, "find the damage by averaging 8 flipped and turned passes of the detector: "
              "a cleaner damage mask, detection 8x slower"),
        REVIEW, TEXT_GUARD, PROTECT_TEXT,
    )
    defaults = {"face_strength": 1.0}

    def default_model(self, params: dict[str, Any]) -> str | None:
        return INPAINTER if params["inpainter"] == "model" else None

    def validate(self, ctx: TaskContext, params: dict[str, Any]) -> None:
        if params["inpainter"] == "telea" and ctx.model:
            raise BadRequest(f"inpainter telea takes no model (got {ctx.model}); use inpainter model to fill with it")

    def run(self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]) -> TaskResult:
        given = None if mask is None else mask >= 0.5
        by_hand = given is not None and params["mask_is"] == "damage"
        if not params["detect"] and not by_hand:
            raise BadRequest("detect is off and no damage was marked: give a mask (--mask, or a selection in the "
                             "editor) with mask_is damage, or turn detect on")
        info: dict[str, Any] = {"inpainter": params["inpainter"]}
        inpainter = self._inpainter(ctx) if params["inpainter"] == "model" else None  # refused before any work
        found = np.zeros(image.color.shape[:2], bool)
        if params["detect"]:
            found, info["detector"] = find_damage(ctx, image.color, params["sensitivity"], params["ensemble"])
            if given is not None and not by_hand:
                found &= given
        if by_hand:
            assert given is not None
            found |= given
        hole = grow(found, params["grow"])
        info["damaged_share"] = round(float(found.mean()), 6)
        info["repaired_share"] = round(float(hole.mean()), 6)
        review = hole.astype(np.float32) if params["review"] else None
        if not hole.any():
            ctx.progress(1.0, "no damage found")
            return TaskResult(image, info, review=review, mask_consumed=by_hand)
        if inpainter is None:
            ctx.progress(0.5, "filling (Telea)")
            filled = telea(image.color, hole)
        else:
            filled = self._inpaint(ctx, inpainter, image, hole, info)
        out = image.color + feather(hole)[:, :, None] * (filled - image.color)
        ctx.progress(1.0, "done")
        return TaskResult(WorkImage(np.ascontiguousarray(out, np.float32), image.alpha, image.gray), info,
                          review=review, mask_consumed=by_hand)

    def _inpainter(self, ctx: TaskContext) -> tuple[ModelSpec, LoadedModel]:
        spec, model = load_for(ctx, INPAINTER)
        if model.purpose != "Inpainting" or model.input_channels != 3 or model.output_channels != 3:
            raise BadRequest(f"model {spec.name} is not an RGB inpainting model ({model.architecture}, "
                             f"{model.purpose})")
        return spec, model

    def _inpaint(self, ctx: TaskContext, inpainter: tuple[ModelSpec, LoadedModel], image: WorkImage,
                 hole: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        spec, model = inpainter
        # ours (a DRUNet whose conditioning plane is the mask) refines Telea's fill; LaMa-class models take the
        # image and blank the hole themselves
        color = telea(image.color, hole) if model.condition == "mask" else image.color
        stacked = np.concatenate([color, hole[:, :, None].astype(np.float32)], 2)
        filled, run = run_tiles(ctx, model, stacked, "filling", {}, span=(0.5, 0.95))
        info.update(run_info(spec, run))
        return filled


def find_damage(ctx: TaskContext, color: np.ndarray, sensitivity: float,
                ensemble: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """The damaged pixels (H x W bool) the builtin detector finds at `sensitivity` (its map averaged over the 8
    flips and turns with `ensemble`), and how it ran."""
    spec = resolve(DETECTOR)
    ctx.progress(0.0, "loading the damage detector")
    model = ctx.engine.get(spec, ctx.device)
    if model.output_channels != 1:
        raise BadRequest(f"model {spec.name} is not a damage detector ({model.output_channels} output channels)")
    damage_map, run = run_tiles(ctx, model, color, "finding damage", {"ensemble": ensemble}, span=(0.05, 0.45))
    cut = float(np.clip(CUT + 0.5 - sensitivity, *THRESHOLDS))
    return damage_map[:, :, 0] > cut, dict(run_info(spec, run), threshold=round(cut, 3), ensemble=ensemble)
