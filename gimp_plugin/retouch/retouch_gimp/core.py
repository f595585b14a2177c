"""The GIMP side of a Retouch job: read the drawable (or the selection of it), let the daemon work, add the result.

`enhance(image, drawable, task, values)` is what the `retouch-enhance` procedure and every menu entry run, in all
run modes. The source drawable is never written to; everything added to the image is one undo group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

from .wire import editor  # noqa: E402
from .wire.client import Client, Job, Progress, Result  # noqa: E402
from .wire.errors import RetouchError  # noqa: E402
from .wire.protocol import ImageSpec  # noqa: E402

SETTINGS_FILE = Path(__file__).resolve().parent / "settings.json"
# GIMP precision component -> (Babl component type, wire dtype)
COMPONENTS = {"u8": ("u8", "u8"), "u16": ("u16", "u16"), "u32": ("float", "f32"), "half": ("half", "f16"),
              "float": ("float", "f32"), "double": ("float", "f32")}
# GIMP transfer -> (Babl RGBA model, wire transfer)
TRANSFERS = {"linear": ("RGBA", "linear"), "non-linear": ("R'G'B'A", "srgb"), "perceptual": ("R~G~B~A", "srgb")}


class RetouchPluginError(RetouchError):
    """What the user asked for cannot be done (indexed image, empty layer...): shown as is, nothing changed."""


@dataclass
class Request:
    image: Any
    drawable: Any
    task: dict[str, Any]
    params: dict[str, Any]
    model: str | None
    region: editor.JobRegion
    spec: ImageSpec
    babl: str
    pixels: bytes
    mask: bytes | None
    scale: int
    new_image: bool
    notes: list[str] = field(default_factory=list)


def make_client() -> Client:
    return editor.make_client(SETTINGS_FILE)


def pixel_format(image: Any) -> tuple[str, str, str]:
    """(Babl format, wire dtype, wire transfer) matching the image's precision, so nothing is rounded twice."""
    nick = image.get_precision().value_nick  # e.g. "u16-non-linear", "float-linear", "u8-perceptual"
    component, _, trc = nick.partition("-")
    if component not in COMPONENTS or trc not in TRANSFERS:
        raise RetouchPluginError(f"unsupported image precision {nick}")
    babl_type, dtype = COMPONENTS[component]
    model, transfer = TRANSFERS[trc]
    return f"{model} {babl_type}", dtype, transfer


def _rect(x: int, y: int, w: int, h: int) -> Any:
    return Gegl.Rectangle.new(x, y, w, h)


def selection_box(image: Any) -> editor.Rect | None:
    """The selection's bounding box in image coordinates, or None when nothing is selected."""
    found = Gimp.Selection.bounds(image)
    non_empty, x1, y1, x2, y2 = found[-5:]
    return editor.Rect(x1, y1, x2 - x1, y2 - y1) if non_empty else None


def read_selection(image: Any, rect: editor.Rect, scale: float = 1.0) -> bytes:
    """8-bit selection values (0 = outside, 255 = inside, feathering in between) over `rect`."""
    buf = image.get_selection().get_buffer()
    return bytes(buf.get(_rect(rect.x, rect.y, rect.width, rect.height), scale, "Y u8", Gegl.AbyssPolicy.NONE))


def task_values(task: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The PDB arguments that this task takes, plus the free-form options; unknown options are named."""
    takes = {p["name"] for p in task.get("params", [])}
    params = {k: v for k, v in values.items() if k in takes and k not in ("options",)}
    params.update(editor.task_params(task, editor.parse_options(str(values.get("options") or ""))))
    return params


def prepare(image: Any, drawable: Any, task: dict[str, Any], values: dict[str, Any]) -> Request:
    if image.get_base_type() == Gimp.ImageBaseType.INDEXED:
        raise RetouchPluginError("Retouch works on RGB and grayscale images; this one is indexed. Convert it with "
                                 "Image > Mode > RGB first; nothing was changed.")
    if task.get("name") == "colorize" and image.get_base_type() == Gimp.ImageBaseType.GRAY:
        raise RetouchPluginError("Colorize needs an RGB image to put colours in; this one is grayscale. Convert it "
                                 "with Image > Mode > RGB first; nothing was changed.")
    if not isinstance(drawable, Gimp.Layer) or isinstance(drawable, Gimp.LayerMask):
        raise RetouchPluginError("select a layer (not a channel or a mask) to enhance")
    notes = []
    if drawable.is_group():
        notes.append(f"group '{drawable.get_name()}': its rendered content was used")
    params = task_values(task, values)
    scale = editor.output_scale(task, params)
    _, ox, oy = drawable.get_offsets()
    canvas = editor.Rect(0, 0, image.get_width(), image.get_height())
    layer_rect = editor.Rect(ox, oy, drawable.get_width(), drawable.get_height()).intersect(canvas)
    selection = selection_box(image)
    try:
        region = editor.job_region(layer_rect if selection is None else canvas, selection)
        params = editor.canvas_params(params, region.sent)
    except ValueError as exc:
        raise RetouchPluginError(str(exc)) from None
    babl, dtype, transfer = pixel_format(image)
    s = region.sent
    spec = ImageSpec(s.width, s.height, dtype, "RGBA", transfer)
    buf = drawable.get_buffer()  # a group's buffer is its projection
    pixels = bytes(buf.get(_rect(s.x - ox, s.y - oy, s.width, s.height), 1.0, babl, Gegl.AbyssPolicy.NONE))
    if len(pixels) != spec.nbytes:
        raise RetouchPluginError(f"GIMP returned {len(pixels)} bytes for {s.width}x{s.height} {babl}")
    mask = read_selection(image, s) if selection is not None else None
    model = str(values.get("model") or "") or None
    return Request(image, drawable, task, params, model, region, spec, babl, pixels, mask, scale,
                   not bool(values.get("resize_image")), notes)


def execute(request: Request, client: Client, on_progress: Callable[[Progress], None] | None = None,
            on_job: Callable[[Job], None] | None = None) -> Result:
    job = client.submit(request.task["name"], request.pixels, request.spec, params=request.params,
                        model=request.model, mask=request.mask)
    try:
        if on_job is not None:
            on_job(job)
        result = job.result(on_progress)
    finally:
        job.close()
    want = (request.region.sent.width * request.scale, request.region.sent.height * request.scale)
    if (result.spec.width, result.spec.height) != want or result.spec.dtype != request.spec.dtype:
        raise RetouchError(f"the daemon returned a {result.spec.width}x{result.spec.height} {result.spec.dtype} "
                           f"image; {want[0]}x{want[1]} {request.spec.dtype} was expected")
    return result


def apply(request: Request, result: Result) -> Any:
    """Add the result as a new layer (with a mask from the selection); returns the layer.

    Same-size results go directly above the source, in one undo group. Upscaled results go into a new image,
    or, when asked, the image is scaled first (inside the same undo group) and the layer goes above the source.
    """
    s = request.scale
    spec = request.spec
    inner = request.region.inner.scaled(s)
    target = request.region.target.scaled(s)
    pixels = editor.crop_rows(result.pixels, result.spec.row_stride, spec.channels * spec.itemsize, inner)
    name = editor.layer_name(request.task, {**result.info, "scale": s})
    source_image = request.image
    gray = source_image.get_base_type() == Gimp.ImageBaseType.GRAY
    layer_type = Gimp.ImageType.GRAYA_IMAGE if gray else Gimp.ImageType.RGBA_IMAGE

    if s > 1 and request.new_image:
        image = Gimp.Image.new_with_precision(target.width, target.height,
                                              Gimp.ImageBaseType.GRAY if gray else Gimp.ImageBaseType.RGB,
                                              source_image.get_precision())
        image.undo_disable()
        layer = _new_layer(image, name, target.width, target.height, layer_type, pixels, request.babl, 0, 0)
        image.insert_layer(layer, None, 0)
        _add_review(image, layer, result, inner, editor.Rect(0, 0, target.width, target.height), layer_type, False)
        _add_flag_paths(image, result, inner, editor.Rect(0, 0, target.width, target.height))
        if request.mask is not None:
            t = request.region.target
            scaled = read_selection(source_image, editor.Rect(t.x * s, t.y * s, t.width * s, t.height * s), s)
            mask = layer.create_mask(Gimp.AddMaskType.WHITE)
            layer.add_mask(mask)
            mbuf = mask.get_buffer()
            mbuf.set(_rect(0, 0, target.width, target.height), "Y u8", scaled)
            mbuf.flush()
        image.undo_enable()
        image.clean_all()
        return layer

    image = source_image
    image.undo_group_start()
    try:
        if s > 1:
            image.scale(image.get_width() * s, image.get_height() * s)
        source = request.drawable
        layer = _new_layer(image, name, target.width, target.height, layer_type, pixels, request.babl,
                           target.x, target.y)
        image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
        if request.mask is not None:
            layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))
        _add_review(image, layer, result, inner, target, layer_type, request.mask is not None)
        _add_flag_paths(image, result, inner, target)
    finally:
        image.undo_group_end()
    return layer


def _add_review(image: Any, above: Any, result: Result, inner: editor.Rect, at: editor.Rect, kind: Any,
                masked: bool) -> None:
    """The invention map as a hidden layer "Retouch review" right above the result (red, alpha = the map)."""
    if result.review is None:
        return
    gray = editor.crop_rows(result.review, result.spec.width, 1, inner)
    layer = _new_layer(image, editor.REVIEW_LAYER, at.width, at.height, kind,
                       editor.review_pixels(gray, "u8", "RGBA"), "R'G'B'A u8", at.x, at.y)
    layer.set_visible(False)
    image.insert_layer(layer, above.get_parent(), image.get_item_position(above))
    if masked:
        layer.add_mask(layer.create_mask(Gimp.AddMaskType.SELECTION))


FLAG_PATH_PREFIX = "Retouch flag: "


def _add_flag_paths(image: Any, result: Result, inner: editor.Rect, at: editor.Rect) -> None:
    """One rectangular path per flag (text read differently, a face given a lighter touch), named with the daemon's
    words: the Paths dialog lists them, and a path can be shown, selected from or stroked."""
    for flag in editor.place_flags(result.info.get("flags") or [], inner, at):
        r = flag.rect
        corners = [(r.x, r.y), (r.right, r.y), (r.right, r.bottom), (r.x, r.bottom)]
        points = [c for x, y in corners for c in (x, y, x, y, x, y)]  # a corner anchor with its two handles
        path = Gimp.Path.new(image, FLAG_PATH_PREFIX + flag.label)
        path.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, points, True)
        image.insert_path(path, None, 0)
        path.set_visible(True)


def _new_layer(image: Any, name: str, w: int, h: int, kind: Any, pixels: bytes, babl: str, x: int, y: int) -> Any:
    layer = Gimp.Layer.new(image, name, w, h, kind, 100.0, Gimp.LayerMode.NORMAL)
    layer.set_offsets(x, y)
    buf = layer.get_buffer()
    buf.set(_rect(0, 0, w, h), babl, pixels)
    buf.flush()
    layer.update(0, 0, w, h)
    return layer


def enhance(image: Any, drawable: Any, task_name: str, values: dict[str, Any],
            on_progress: Callable[[Progress], None] | None = None,
            on_job: Callable[[Job], None] | None = None) -> tuple[Any, Request]:
    """The whole job; raises RetouchError with the reason, leaving the image untouched."""
    client = make_client()
    task = editor.find_task(client.tasks(), task_name)
    request = prepare(image, drawable, task, values)
    result = execute(request, client, on_progress, on_job)
    return apply(request, result), request


__all__ = ["RetouchError", "RetouchPluginError", "enhance"]
