"""What every task is: a name, declared parameters (validated here, shown by the plugins) and a run method."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..engine import Engine, LoadedModel, RunInfo
from ..engine.registry import ModelSpec, resolve
from ..errors import BadRequest, shown
from ..pixels import WorkImage


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # "int" | "float" | "str" | "bool"
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    allow_auto: bool = False  # the string "auto" is accepted besides a number
    group: str = "task"  # "task" | "pre" | "post": how the plugins group the controls

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d

    def parse(self, value: Any) -> Any:
        if self.allow_auto and value == "auto":
            return value
        kinds = {"int": int, "float": (int, float), "str": str, "bool": bool}
        ok = isinstance(value, kinds[self.kind]) and not (self.kind != "bool" and isinstance(value, bool))
        if not ok:
            wanted = f"'auto' or {self.kind}" if self.allow_auto else self.kind
            raise BadRequest(f"parameter '{self.name}' must be {wanted}, got {shown(value)}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise BadRequest(f"parameter '{self.name}' is {shown(value)}, not one of {allowed}")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise BadRequest(f"parameter '{self.name}' is {shown(value)}, outside {self.minimum}..{self.maximum}")
        return float(value) if self.kind == "float" else value


# Pre- and post-processing every task offers (applied by `pipeline.run_pipeline` around the task's own work).
COMMON_PARAMS = (
    Param("auto_exposure", "bool", False, "correct exposure from the luminance histogram first", group="pre"),
    Param("auto_white_balance", "bool", False, "neutralise a colour cast first", group="pre"),
    Param("strength", "float", 1.0, "blend with the source: 0 = source unchanged (nothing else runs), 1 = full result",
          minimum=0.0, maximum=1.0, group="post"),
    Param("grain", "float", 0.0, "film-like grain added to the result (0 = none)", minimum=0.0, maximum=1.0,
          group="post"),
    Param("grain_seed", "int", 0, "seed of the grain pattern (same seed, same grain)", minimum=0,
          maximum=2**31 - 1, group="post"),
    Param("color_fix", "str", "none", "keep the source's low-frequency colours", choices=("none", "wavelet", "adain"),
          group="post"),
    Param("face_strength", "float", 0.5, "strength on faces, relative to the rest (faces found in the image get a "
          "lighter touch; 1 = none, no detection)", minimum=0.0, maximum=1.0, group="post"),
)


# For every task that runs a model.
ENSEMBLE = Param("ensemble", "bool", False, "average 8 flipped and turned passes: 8x slower, a little cleaner")
REVIEW = Param("review", "bool", False, "also return an invention map: where the result is not supported by the "
               "input (3 extra passes)", group="review")
TEXT_GUARD = Param("text_guard", "bool", False, "read the text before and after (OCR) and flag every region whose "
                   "reading changed", group="review")
PROTECT_TEXT = Param("protect_text", "bool", False, "keep flagged text regions at a conservative result (the input, "
                     "or its bicubic enlargement); implies text_guard", group="review")
MODEL_TASK_PARAMS = (ENSEMBLE, REVIEW, TEXT_GUARD, PROTECT_TEXT)


@dataclass
class TaskContext:
    engine: Engine
    progress: Callable[[float, str], None]
    check_cancel: Callable[[], None]
    model: str | None = None
    tile: int | None = None
    device: torch.device | None = None  # None: the daemon's device


@dataclass
class TaskResult:
    image: WorkImage
    info: dict[str, Any] = field(default_factory=dict)
    unchanged: bool = False  # the source itself (strength 0): the daemon returns the input frame bit for bit
    review: np.ndarray | None = None  # the invention map (H x W float32 in [0, 1]) when asked for
    mask_consumed: bool = False  # the task used the job's mask itself (restore's hand-marked damage): no selection


class Task:
    name = ""
    label = ""
    description = ""
    params: tuple[Param, ...] = ()
    defaults: dict[str, Any] = {}  # this task's own defaults for common parameters

    def default_model(self, params: dict[str, Any]) -> str | None:
        return None

    def output_scale(self, params: dict[str, Any]) -> int:
        return 1

    def auto_model(self) -> str | None:
        """The model `model auto` picks for this task's own work (None: its default)."""
        return None

    @property
    def all_params(self) -> tuple[Param, ...]:
        common = tuple(replace(p, default=self.defaults[p.name]) if p.name in self.defaults else p
                       for p in COMMON_PARAMS)
        return self.params + common

    def parse_params(self, raw: Any) -> dict[str, Any]:
        """Every parameter (the task's own and the common ones), validated, with defaults filled in."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise BadRequest("'params' must be an object")
        known = {p.name: p for p in self.all_params}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            names = ", ".join(shown(name, 40) for name in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise BadRequest(f"task '{self.name}' has no parameter {names} (it has: {', '.join(known) or 'none'})")
        return {name: p.parse(raw[name]) if name in raw else p.default for name, p in known.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "params": [p.to_wire() for p in self.all_params],
            "default_model": self.default_model({p.name: p.default for p in self.all_params}),
        }

    def validate(self, ctx: TaskContext, params: dict[str, Any]) -> None:
        """Checks that need more than one parameter (or the job's model); raises BadRequest. Runs for every job."""

    def run(
        self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]
    ) -> TaskResult:
        raise NotImplementedError


def load_for(ctx: TaskContext, name: str) -> tuple[ModelSpec, LoadedModel]:
    spec = resolve(ctx.model or name)
    ctx.progress(0.0, "loading model")
    return spec, ctx.engine.get(spec, ctx.device)


def check_restorer(spec: ModelSpec, model: LoadedModel, wanted: str = "a same-size RGB restoration model") -> None:
    """Same-size RGB models only (denoisers, deblurrers, face restorers); raises BadRequest saying the model is not
    `wanted` and what it is instead."""
    if model.scale != 1 or model.input_channels != 3 or model.output_channels != 3:
        raise BadRequest(f"model {spec.name} is not {wanted} ({model.architecture}, scale {model.scale}, "
                         f"{model.input_channels} input and {model.output_channels} output channels)")


def run_tiles(ctx: TaskContext, model: LoadedModel, color: np.ndarray, stage: str, params: dict[str, Any],
              condition: float | None = None, span: tuple[float, float] = (0.05, 0.95)) -> tuple[np.ndarray, RunInfo]:
    """The model over the image, tile by tile, with progress across `span` (default 5 % to 95 %) and cancellation
    between tiles."""

    def on_tile(done: int, total: int) -> None:
        ctx.check_cancel()
        ctx.progress(span[0] + (span[1] - span[0]) * done / total, f"{stage} tile {done}/{total}")

    ctx.check_cancel()
    return ctx.engine.run(model, color, tile=ctx.tile, on_tile=on_tile, condition=condition,
                          ensemble=params.get("ensemble", False))


def run_info(spec: ModelSpec, run: RunInfo) -> dict[str, Any]:
    return {"model": spec.name, "device": run.device, "dtype": run.dtype, "tile": run.tile, "tiles": run.tiles,
            "oom_retries": run.retries}
