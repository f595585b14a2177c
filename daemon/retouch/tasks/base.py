"""What every task is: a name, declared parameters (validated here, shown by the plugins) and a run method."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..engine import Engine
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

    def to_wire(self) -> dict[str, Any]:
        d = asdict(self)
        d["choices"] = list(self.choices) if self.choices is not None else None
        return d

    def parse(self, value: Any) -> Any:
        kinds = {"int": int, "float": (int, float), "str": str, "bool": bool}
        ok = isinstance(value, kinds[self.kind]) and not (self.kind != "bool" and isinstance(value, bool))
        if not ok:
            raise BadRequest(f"parameter '{self.name}' must be {self.kind}, got {shown(value)}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(str(c) for c in self.choices)
            raise BadRequest(f"parameter '{self.name}' is {shown(value)}, not one of {allowed}")
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise BadRequest(f"parameter '{self.name}' is {shown(value)}, outside {self.minimum}..{self.maximum}")
        return float(value) if self.kind == "float" else value


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


class Task:
    name = ""
    label = ""
    description = ""
    params: tuple[Param, ...] = ()

    def default_model(self, params: dict[str, Any]) -> str | None:
        return None

    def parse_params(self, raw: Any) -> dict[str, Any]:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise BadRequest("'params' must be an object")
        known = {p.name: p for p in self.params}
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
            "params": [p.to_wire() for p in self.params],
            "default_model": self.default_model({p.name: p.default for p in self.params}),
        }

    def run(
        self, ctx: TaskContext, image: WorkImage, mask: np.ndarray | None, params: dict[str, Any]
    ) -> TaskResult:
        raise NotImplementedError
