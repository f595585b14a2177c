"""Editor-side helpers shared by the Krita and GIMP plugins (stdlib only: vendored into both bundles).

What lives here is the part of a plugin that does not touch the editor's API: finding the pyzmq build that the
bundle carries for this Python, the region arithmetic of a selection job (bounding box + context padding, cropping
the padding off the result), and turning the daemon's task descriptions into parameter values.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import box_from_text

CONTEXT_PADDING = 32  # pixels of context sent around a selection so the model sees what borders it
PARAM_ALIASES = {"face-strength": "face_strength"}


# ---- pyzmq from the bundle ---------------------------------------------------------------------------------------
def platform_key() -> str:
    """The folder name part that says which OS/CPU a bundled pyzmq build is for."""
    machine = platform.machine().lower()
    if sys.platform == "win32":
        return "win_amd64"
    if sys.platform == "darwin":
        return "macosx"  # universal2 wheels: x86_64 and arm64
    if machine in ("aarch64", "arm64"):
        return "linux_aarch64"
    return "linux_x86_64"


def python_key(version: tuple[int, int] | None = None) -> str:
    """cp310, cp311, or abi3 (one build serves 3.12 and later)."""
    major, minor = version or sys.version_info[:2]
    return "abi3" if (major, minor) >= (3, 12) else f"cp{major}{minor}"


def ensure_zmq(bundled: Path) -> str:
    """Make `import zmq` work: the editor's own pyzmq when it has one, else the build the bundle carries.

    Returns where zmq came from. Raises ImportError naming the folder it looked for when neither exists.
    """
    try:
        import zmq  # noqa: F401  (Debian's python3-zmq, a pip-installed pyzmq...)

        return "system"
    except ImportError:
        pass
    folder = Path(bundled) / f"{python_key()}-{platform_key()}"
    if not folder.is_dir():
        have = sorted(p.name for p in Path(bundled).glob("*-*")) if Path(bundled).is_dir() else []
        raise ImportError(
            f"this Retouch plugin bundle carries no pyzmq for Python {sys.version_info[0]}.{sys.version_info[1]} "
            f"on {platform_key()} (looked for {folder}; it has: {', '.join(have) or 'none'}). "
            "Install pyzmq into the editor's Python, or use the bundle built for your system."
        )
    sys.path.insert(0, os.fspath(folder))
    importlib.invalidate_caches()
    import zmq  # noqa: F401,F811

    return os.fspath(folder)


# ---- regions -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    width: int
    height: int

    @property
    def right(self) -> int:
        return self.x + self.width

    @property
    def bottom(self) -> int:
        return self.y + self.height

    @property
    def empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    def intersect(self, other: Rect) -> Rect:
        x, y = max(self.x, other.x), max(self.y, other.y)
        return Rect(x, y, max(0, min(self.right, other.right) - x), max(0, min(self.bottom, other.bottom) - y))

    def grow(self, pad: int) -> Rect:
        return Rect(self.x - pad, self.y - pad, self.width + 2 * pad, self.height + 2 * pad)

    def scaled(self, factor: int) -> Rect:
        return Rect(self.x * factor, self.y * factor, self.width * factor, self.height * factor)


@dataclass(frozen=True)
class JobRegion:
    """What a job processes: `sent` (the target plus context padding, inside the canvas) and `target`."""

    target: Rect
    sent: Rect

    @property
    def inner(self) -> Rect:
        """The target in the coordinates of the sent crop."""
        return Rect(self.target.x - self.sent.x, self.target.y - self.sent.y, self.target.width, self.target.height)


def job_region(canvas: Rect, selection: Rect | None, padding: int = CONTEXT_PADDING) -> JobRegion:
    """The region to process: the selection's bounding box (or the whole canvas), padded for context.

    An empty selection means the whole layer, as in every editor. Raises ValueError when the selection lies
    outside the canvas.
    """
    if canvas.empty:
        raise ValueError("the layer is empty: there is nothing to enhance")
    if selection is None or selection.empty:
        return JobRegion(canvas, canvas)
    target = selection.intersect(canvas)
    if target.empty:
        raise ValueError("the selection lies outside the canvas: there is nothing to enhance")
    return JobRegion(target, target.grow(padding).intersect(canvas))


def crop_rows(data: bytes, row_bytes: int, pixel_bytes: int, rect: Rect) -> bytes:
    """Cut `rect` out of a tightly packed frame of `row_bytes` per row (pure Python, one slice per row)."""
    if rect.x == 0 and rect.width * pixel_bytes == row_bytes:
        return bytes(data[rect.y * row_bytes:rect.bottom * row_bytes])
    start, width = rect.x * pixel_bytes, rect.width * pixel_bytes
    view = memoryview(data)
    return b"".join(view[y * row_bytes + start:y * row_bytes + start + width] for y in range(rect.y, rect.bottom))


def transfer_for_profile(profile: str) -> str:
    """`linear` for linear-light ICC profiles (Krita's *-g10 / *linear*, GIMP's linear precisions), else `srgb`."""
    name = profile.lower()
    return "linear" if ("g10" in name or "linear" in name) else "srgb"


# ---- task parameters ----------------------------------------------------------------------------------------------
def find_task(tasks: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for task in tasks:
        if task.get("name") == name:
            return task
    known = ", ".join(str(t.get("name")) for t in tasks)
    raise ValueError(f"the daemon offers no task {name!r}; it offers: {known}")


def task_params(task: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Keep the values this task takes (editor-wide settings such as face strength may not apply to it).

    Raises ValueError naming a parameter no task knows, so typos in scripts do not pass silently.
    """
    names = {p["name"] for p in task.get("params", [])}
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = PARAM_ALIASES.get(key, key)
        if name in names:
            out[name] = value
        elif name not in ("face_strength", "model"):  # settings the editors always show, meaningful per task
            raise ValueError(f"task {task.get('name')!r} has no parameter {key!r}; it takes: "
                             f"{', '.join(sorted(names))}")
    return out


def canvas_params(params: dict[str, Any], sent: Rect) -> dict[str, Any]:
    """Task parameters that the user gives in canvas pixels (the document's or image's, as the editor's status bar
    shows them) moved into the sent crop's: `blur_trace`'s x and y. A malformed value passes unchanged (the daemon
    names what is wrong); a box outside the sent area raises ValueError saying so."""
    box = box_from_text(params.get("blur_trace"))
    if box is None:
        return params
    x, y, w, h = box
    if x < sent.x or y < sent.y or x + w > sent.x + sent.width or y + h > sent.y + sent.height:
        raise ValueError(f"the blur_trace box {x},{y},{w},{h} (canvas pixels) is not inside the area sent "
                         f"({sent.x},{sent.y},{sent.width},{sent.height}: the selection and its context, or the "
                         "layer): select an area that holds the light too, or select nothing")
    return dict(params, blur_trace=f"{x - sent.x},{y - sent.y},{w},{h}")


def parse_options(text: str) -> dict[str, Any]:
    """Task options as typed into an editor's text field, `noise_level=10 color_fix=wavelet auto_exposure=true
    blur_trace=7,86,36,36`, -> typed values (integers, floats, booleans, strings). Pairs are separated by spaces or
    commas; a comma that no NAME= follows belongs to the value (`blur_trace=7,86,36,36`). Raises ValueError naming a
    piece that is no NAME=VALUE pair."""
    items: list[str] = []
    for word in text.split():
        for i, piece in enumerate(p for p in word.split(",") if p):
            if "=" in piece or i == 0:
                items.append(piece)
            else:
                items[-1] += "," + piece
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise ValueError(f"options must be NAME=VALUE pairs, got {item!r}")
        out[name.replace("-", "_")] = _typed(raw)
    return out


def _typed(raw: str) -> Any:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def output_scale(task: dict[str, Any], params: dict[str, Any]) -> int:
    """How much bigger the result is than what was sent (the `scale` parameter of upscaling tasks)."""
    for p in task.get("params", []):
        if p["name"] == "scale":
            return int(params.get("scale", p.get("default") or 1))
    return 1


def layer_name(task: dict[str, Any], info: dict[str, Any]) -> str:
    """`Retouch upscale ×2 (retouch-upscale-x2)`: what the new layer is called."""
    label = f"Retouch {task.get('name')}"
    scale = info.get("scale")
    if isinstance(scale, int) and scale > 1:
        label += f" \u00d7{scale}"
    model = info.get("model")
    return f"{label} ({model})" if model else label


# ---- daemon access -----------------------------------------------------------------------------------------------
def load_settings(path: Path) -> dict[str, Any]:
    """The plugin's settings.json (written by `retouch install-plugin`), or {} when missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def make_client(settings_path: Path) -> Any:
    """A client that starts the daemon with the command the installer recorded, unless the user set one."""
    from .client import Client  # needs pyzmq: imported only when a plugin talks to the daemon

    command = load_settings(settings_path).get("daemon_command")
    if command and not os.environ.get("RETOUCH_DAEMON_COMMAND"):
        os.environ["RETOUCH_DAEMON_COMMAND"] = str(command)
    return Client(autostart=True, start_timeout=90.0, timeout=30.0)


# ---- review layer ------------------------------------------------------------------------------------------------
REVIEW_LAYER = "Retouch review"


def review_pixels(gray: bytes, dtype: str, order: str) -> bytes:
    """The invention map (8-bit, 255 = invented) as red pixels whose alpha is the map, in an editor's layout.

    Over the result, the layer tints invented detail red in proportion to how invented it is.
    """
    n = len(gray)
    red = 2 if order == "BGRA" else 0
    if dtype == "u8":
        out = bytearray(n * 4)
        out[red::4] = b"\xff" * n
        out[3::4] = gray
        return bytes(out)
    if dtype == "u16":  # little-endian: the value g * 257 is the byte g twice
        out = bytearray(n * 8)
        out[red * 2::8] = b"\xff" * n
        out[red * 2 + 1::8] = b"\xff" * n
        out[6::8] = gray
        out[7::8] = gray
        return bytes(out)
    import struct

    code = {"f16": "e", "f32": "f"}[dtype]
    lut = [struct.pack("<" + code, v / 255.0) for v in range(256)]
    channels = [lut[0], lut[0], lut[0]]
    channels[red] = lut[255]
    head = b"".join(channels)
    return b"".join(head + lut[g] for g in gray)


def model_summary(model: dict[str, Any]) -> str:
    """One line about a model from the daemon's list: what the editors show beside its name."""
    size = model.get("size")
    parts = [f"task {model.get('task') or '?'}", f"x{model.get('scale') or 1}", str(model.get("architecture") or "?"),
             f"{size / 1e6:.1f} MB" if isinstance(size, int) else "", f"licence: {model.get('license') or 'unknown'}",
             {True: "commercial use allowed", False: "NON-COMMERCIAL"}.get(model.get("commercial"),
                                                                           "commercial use: unknown"),
             f"from {model['source']}" if model.get("source") else ""]
    return ", ".join(p for p in parts if p)


# ---- flags: text the result reads differently, faces given a lighter touch ---------------------------------------
@dataclass(frozen=True)
class PlacedFlag:
    kind: str  # "text" | "face" | ...
    label: str  # what the editor lists: the daemon's own words
    rect: Rect  # in the document (or new image) the result went into


def place_flags(flags: list[dict[str, Any]], inner: Rect, at: Rect) -> list[PlacedFlag]:
    """The daemon's flags (boxes in result pixels of the sent region) where the editor put the result: the part
    `inner` of the result was placed at `at`. Flags are clipped to it; those wholly outside are dropped."""
    placed = []
    for flag in flags:
        try:
            x0, y0, x1, y1 = (int(v) for v in flag["box"])
        except (KeyError, TypeError, ValueError):
            continue  # a flag this plugin cannot place is left out, never a failed job
        x0, y0 = max(x0, inner.x), max(y0, inner.y)
        x1, y1 = min(x1, inner.right), min(y1, inner.bottom)
        if x1 <= x0 or y1 <= y0:
            continue
        rect = Rect(x0 - inner.x + at.x, y0 - inner.y + at.y, x1 - x0, y1 - y0)
        kind = str(flag.get("kind", "flag"))
        placed.append(PlacedFlag(kind, str(flag.get("label") or kind), rect))
    return placed
