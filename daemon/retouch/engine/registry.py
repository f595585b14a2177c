"""Where models come from: the builtin weights shipped in the package, and the user's model folder.

A model is named by its file stem (`retouch-upscale-x4`) or given as a path. The user folder is
`<platformdirs user data dir>/retouch/models` (`RETOUCH_MODELS_DIR` overrides it); any `.pth`, `.pt`, `.ckpt`,
`.safetensors` or `.onnx` file dropped there is listed and can be used by name.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UnknownModel, shown
from .loader import MODEL_SUFFIXES

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: Path
    builtin: bool
    task: str | None = None  # known for builtin models (from their card), None for user files
    scale: int | None = None
    license: str | None = None
    description: str = ""
    condition: str | None = None  # what an extra conditioning input channel carries ("noise_sigma", "blur_hint")
    condition_scale: float = 1.0  # a noise_sigma model is fed sigma * this (measured by training/calibrate_denoise.py)
    architecture: str | None = None
    sha256: str | None = None  # recorded when the model was installed (`retouch models verify` checks it)
    commercial: bool | None = None  # commercial use allowed by the licence; None: not known
    source: str | None = None  # where the file came from

    def to_wire(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        d["size"] = self.path.stat().st_size if self.path.is_file() else None
        return d


def user_dir(override_var: str, kind: str, name: str) -> Path:
    """`$override_var` when set, else `<platformdirs user_{kind}_dir>/retouch/<name>` (kind: data, cache)."""
    override = os.environ.get(override_var)
    if override:
        return Path(override)
    import platformdirs

    base = {"data": platformdirs.user_data_dir, "cache": platformdirs.user_cache_dir}[kind]
    return Path(base("retouch", appauthor=False)) / name


def user_models_dir() -> Path:
    return user_dir("RETOUCH_MODELS_DIR", "data", "models")


def _builtin_specs() -> list[ModelSpec]:
    index = BUILTIN_DIR / "builtin.json"
    if not index.exists():
        return []
    specs = []
    for entry in json.loads(index.read_text()):
        path = BUILTIN_DIR / entry["file"]
        if path.exists():
            specs.append(
                ModelSpec(
                    name=entry["name"],
                    path=path,
                    builtin=True,
                    task=entry["task"],
                    scale=entry.get("scale"),
                    license=entry.get("license"),
                    description=entry.get("description", ""),
                    condition=entry.get("condition"),
                    condition_scale=float(entry.get("condition_scale", 1.0)),
                    architecture=entry.get("architecture"),
                    sha256=entry.get("sha256"),
                    commercial=entry.get("commercial"),
                    source="builtin (trained by Retouch: training/)",
                )
            )
    return specs


def sidecar(model_file: Path) -> Path:
    """`<name>.json` next to a user model: what `retouch models add/download` recorded about it."""
    return model_file.with_name(model_file.stem + ".json")


def read_sidecar(model_file: Path) -> dict:
    try:
        data = json.loads(sidecar(model_file).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _user_spec(path: Path) -> ModelSpec:
    """A file in the user folder, with what its sidecar says."""
    meta = read_sidecar(path)
    scale = meta.get("scale")
    return ModelSpec(name=path.stem, path=path, builtin=False, task=meta.get("task"),
                     scale=scale if isinstance(scale, int) else None, license=meta.get("license"),
                     architecture=meta.get("architecture"), sha256=meta.get("sha256"),
                     commercial=meta.get("commercial"), source=meta.get("source"))


def list_models() -> list[ModelSpec]:
    specs = _builtin_specs()
    taken = {s.name for s in specs}
    folder = user_models_dir()
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in MODEL_SUFFIXES and path.is_file() and path.stem not in taken:
                specs.append(_user_spec(path))
                taken.add(path.stem)
    return specs


def resolve(name_or_path: str) -> ModelSpec:
    """A model by name, or by path to a model file; raises UnknownModel listing what exists."""
    specs = list_models()
    for spec in specs:
        if spec.name == name_or_path:
            return spec
    path = Path(name_or_path).expanduser()
    if path.suffix.lower() in MODEL_SUFFIXES and path.is_file():
        return ModelSpec(name=path.stem, path=path.resolve(), builtin=False)
    names = ", ".join(s.name for s in specs) or "none"
    raise UnknownModel(f"unknown model {shown(name_or_path)}: not a model file, and not one of: {names}")
