"""The user's model folder: add, remove, verify, and download from the catalog with sha256 checks.

Every model added or downloaded gets a sidecar `<name>.json` next to it: task, architecture, scale, sha256, size,
licence, whether commercial use is allowed, and where it came from. A model becomes visible (its file appears under
its final name) only once it is complete and verified; partial downloads wait in the user cache folder, where a
second `download` resumes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine.loader import MODEL_SUFFIXES, ONNX_SUFFIXES
from .engine.registry import BUILTIN_DIR, list_models, read_sidecar, sidecar, user_dir, user_models_dir
from .errors import RetouchError, UnknownModel, shown

CATALOG = BUILTIN_DIR / "catalog.toml"
CHUNK = 1 << 20
# spandrel purpose -> our task
PURPOSE_TASKS = {"SR": "upscale", "FaceSR": "face", "Inpainting": "restore", "Restoration": "denoise"}


class DownloadError(RetouchError):
    """A download that did not give the catalog's exact file."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    task: str
    architecture: str
    scale: int
    url: str
    sha256: str
    size: int
    license: str
    commercial: bool
    source: str  # where the sha256 and size were published
    file: str = ""

    @property
    def filename(self) -> str:
        return self.file or self.url.rsplit("/", 1)[-1].split("?")[0]


# ---- catalog -------------------------------------------------------------------------------------------------------
def catalog_path() -> Path:
    return Path(os.environ.get("RETOUCH_CATALOG") or CATALOG)


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    path = path or catalog_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RetouchError(f"cannot read the model catalog {path}: {exc}") from None
    entries = []
    for raw in data.get("model", []):
        try:
            entry = CatalogEntry(**raw)
        except TypeError as exc:
            raise RetouchError(f"catalog {path}: entry {raw.get('name')!r} is malformed: {exc}") from None
        if len(entry.sha256) != 64 or not entry.url.startswith(("https://", "http://")):
            raise RetouchError(f"catalog {path}: entry {entry.name!r} needs a 64-hex sha256 and an http(s) url")
        entries.append(entry)
    return entries


def catalog_entry(name: str, path: Path | None = None) -> CatalogEntry:
    entries = load_catalog(path)
    for entry in entries:
        if entry.name == name:
            return entry
    raise UnknownModel(f"no model {shown(name)} in the catalog; it has: {', '.join(e.name for e in entries)}")


# ---- files -----------------------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def inspect_file(path: Path) -> dict[str, Any]:
    """Architecture, scale, purpose and task of a model file, read by spandrel (or onnxruntime), on the CPU."""
    import torch

    from .engine.loader import load_model, read_descriptor

    if path.suffix.lower() in ONNX_SUFFIXES:
        model = load_model(path, torch.device("cpu"), "fp32")
        purpose = "SR" if model.scale > 1 else "Restoration"
        return {"architecture": "ONNX", "scale": model.scale, "purpose": purpose, "task": PURPOSE_TASKS[purpose]}
    import spandrel

    try:
        desc: Any = read_descriptor(path)
    except spandrel.UnsupportedModelError:
        raise RetouchError(f"{path.name}: spandrel does not recognise this architecture") from None
    except Exception as exc:  # corrupt files, pickles that are not plain weights
        raise RetouchError(f"{path.name} is not a model file Retouch can load safely: {exc}") from None
    purpose = str(desc.purpose)
    task = PURPOSE_TASKS.get(purpose, "upscale" if int(desc.scale) > 1 else "denoise")
    if purpose == "Restoration" and any(w in path.stem.lower() for w in ("deblur", "sharp", "motion", "defocus")):
        task = "sharpen"
    return {"architecture": desc.architecture.name, "scale": int(desc.scale), "purpose": purpose, "task": task}


def add(path: Path, *, name: str | None = None, license: str | None = None, commercial: bool | None = None,
        task: str | None = None) -> dict[str, Any]:
    """Copy a model file into the user folder with its sidecar; returns the sidecar's content."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RetouchError(f"model file {path} does not exist")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise RetouchError(f"{path.name}: not a model file (expected {', '.join(MODEL_SUFFIXES)})")
    name = name or path.stem
    _check_name(name)
    info = inspect_file(path)
    folder = user_models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}{path.suffix.lower()}"
    if any(s.name == name for s in list_models()):
        raise RetouchError(f"a model named {name!r} exists already: remove it first or pass --name")
    tmp = folder / f".{dest.name}.adding"
    shutil.copyfile(path, tmp)
    meta = {"name": name, "file": dest.name, "task": task or info["task"], "architecture": info["architecture"],
            "scale": info["scale"], "purpose": info["purpose"], "sha256": sha256_file(tmp),
            "size": tmp.stat().st_size, "license": license or "unknown (not given when added)",
            "commercial": commercial, "source": str(path.resolve()), "added": time.strftime("%Y-%m-%d")}
    _write_json(sidecar(dest), meta)
    os.replace(tmp, dest)
    return meta


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise RetouchError(f"{name!r} cannot be a model name (no slashes, no leading dot)")


def remove(name: str) -> Path:
    for spec in list_models():
        if spec.name == name:
            if spec.builtin:
                raise RetouchError(f"{name} is a builtin model and cannot be removed")
            spec.path.unlink()
            sidecar(spec.path).unlink(missing_ok=True)
            return spec.path
    raise UnknownModel(f"no user model named {shown(name)}")


def verify(name: str | None = None) -> list[dict[str, Any]]:
    """Recompute every (or one) model's sha256 and compare it with the one recorded when it was installed."""
    rows = []
    specs = [s for s in list_models() if name is None or s.name == name]
    if name is not None and not specs:
        raise UnknownModel(f"no model named {shown(name)}")
    for spec in specs:
        expected = spec.sha256
        actual = sha256_file(spec.path)
        status = "no checksum recorded" if not expected else ("ok" if actual == expected else "MISMATCH")
        rows.append({"name": spec.name, "status": status, "sha256": actual, "expected": expected,
                     "path": str(spec.path)})
    return rows


# ---- downloads -------------------------------------------------------------------------------------------------------
def download_cache() -> Path:
    return user_dir("RETOUCH_DOWNLOAD_CACHE", "cache", "downloads")


def download(name: str, on_bytes: Callable[[int, int], None] | None = None, timeout: float = 30.0) -> dict[str, Any]:
    """Fetch a catalog model, resuming a partial download; install it only once size and sha256 match."""
    entry = catalog_entry(name)
    folder = user_models_dir()
    dest = folder / f"{entry.name}{Path(entry.filename).suffix.lower()}"
    installed = read_sidecar(dest) if dest.exists() else {}
    if installed.get("sha256") == entry.sha256:
        return installed
    cache = download_cache()
    cache.mkdir(parents=True, exist_ok=True)
    part = cache / f"{entry.sha256}.part"
    have = part.stat().st_size if part.exists() else 0
    if have > entry.size:
        part.unlink()
        have = 0
    if have < entry.size:
        _fetch(entry, part, have, on_bytes, timeout)
    size = part.stat().st_size
    if size != entry.size:
        part.unlink()
        raise DownloadError(f"{entry.name}: the server sent {size} bytes, the catalog says {entry.size}; "
                            "the file was discarded")
    digest = sha256_file(part)
    if digest != entry.sha256:
        part.unlink()
        raise DownloadError(f"{entry.name}: sha256 {digest} does not match the catalog's {entry.sha256} "
                            f"(published at {entry.source}); the file was discarded")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{dest.name}.installing"
    shutil.copyfile(part, tmp)  # the cache may be on another file system: copy, then rename in place
    meta = {"name": entry.name, "file": dest.name, "task": entry.task, "architecture": entry.architecture,
            "scale": entry.scale, "sha256": entry.sha256, "size": entry.size, "license": entry.license,
            "commercial": entry.commercial, "source": entry.url, "checksum_source": entry.source,
            "added": time.strftime("%Y-%m-%d")}
    _write_json(sidecar(dest), meta)
    os.replace(tmp, dest)
    part.unlink()
    return meta


def _fetch(entry: CatalogEntry, part: Path, have: int, on_bytes: Callable[[int, int], None] | None,
           timeout: float) -> None:
    request = urllib.request.Request(entry.url, headers={"User-Agent": "retouch"})  # noqa: S310 (http/s checked)
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http(s) only, checked above)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{entry.name}: {entry.url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{entry.name}: cannot reach {entry.url}: {getattr(exc, 'reason', exc)}") from None
    with response:
        resumed = response.status == 206
        if have and not resumed:
            have = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        if length is not None and have + int(length) != entry.size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{entry.name}: the server offers {have + int(length)} bytes, the catalog says "
                                f"{entry.size}; nothing was installed")
        done = have
        with part.open("ab" if resumed else "wb") as f:
            try:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if done > entry.size:
                        break
                    if on_bytes is not None:
                        on_bytes(done, entry.size)
            except (OSError, ValueError) as exc:  # IncompleteRead, reset connections
                raise DownloadError(f"{entry.name}: download interrupted after {done} of {entry.size} bytes "
                                    f"({type(exc).__name__}); run the same command again to resume") from None
    if done < entry.size:
        raise DownloadError(f"{entry.name}: download interrupted after {done} of {entry.size} bytes; run the same "
                            "command again to resume")
