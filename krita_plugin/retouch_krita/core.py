"""What the Run button does, as functions other Krita scripts (and the e2e tests) call directly.

    from retouch_krita import run
    layer = run(document, node, "denoise", {"strength": 0.8})

The work is split in three so the docker can keep Krita calls on the GUI thread and the network off it:
`prepare` (GUI thread: reads the layer and the selection), `execute` (any thread: the daemon does the work),
`apply` (GUI thread: builds the new layer with its transparency mask and inserts it in one step). `run` does the
three in a row. The source layer is never written to.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from krita import Krita, Selection  # type: ignore[import-not-found]

from .qt import QtCore, QtGui, QtWidgets
from .settings import make_client
from .wire import editor
from .wire.client import Client, Job, Progress, Result
from .wire.errors import Cancelled, RetouchError
from .wire.protocol import ImageSpec

# Krita colour depth -> (wire dtype, channel order of pixelData)
DEPTHS = {"U8": ("u8", "BGRA"), "U16": ("u16", "BGRA"), "F16": ("f16", "RGBA"), "F32": ("f32", "RGBA")}
OWN_PIXELS = ("paintlayer",)  # layers whose own pixels are read; others are read through their projection
CANVAS_CLASSES = ("KisOpenGLCanvas2", "KisQPainterCanvas")
NEW_DOCUMENTS: list[Any] = []  # documents the plugin opened (upscaled results), newest last


class RetouchPluginError(RetouchError):
    """A problem with what the user asked for (colour model, layer kind, ...): shown as is, nothing changed."""


@dataclass
class Request:
    document: Any
    node: Any
    task: dict[str, Any]
    params: dict[str, Any]
    model: str | None
    region: editor.JobRegion
    spec: ImageSpec
    pixels: bytes
    mask: bytes | None  # over region.sent (0 = keep, 255 = process)
    selection: bytes | None  # over region.target: the transparency mask of the new layer
    scale: int
    resize_document: bool
    preview: bool
    notes: list[str] = field(default_factory=list)


def _check_node(node: Any) -> None:
    if node is None:
        raise RetouchPluginError("no layer is active: pick the layer to enhance in the Layers docker")
    kind = node.type()
    if kind.endswith("mask"):
        raise RetouchPluginError(f"the active node is a {kind}, not a layer: select the layer above it")
    model, depth = node.colorModel(), node.colorDepth()
    if model != "RGBA":
        raise RetouchPluginError(
            f"Retouch works on RGB layers; this one is {model} ({depth}). "
            "Convert it first with Image > Convert Image Color Space to RGB/Alpha; nothing was changed."
        )
    if depth not in DEPTHS:
        raise RetouchPluginError(f"unsupported colour depth {depth}; Retouch takes 8-bit, 16-bit and float layers")


def _rect(q: Any) -> editor.Rect:
    return editor.Rect(q.x(), q.y(), q.width(), q.height())


def prepare(document: Any, node: Any, task: dict[str, Any], params: dict[str, Any]) -> Request:
    """Read what the job needs from Krita (GUI thread). Raises RetouchPluginError for what cannot be done."""
    _check_node(node)
    values = dict(params)
    model = values.pop("model", None) or None
    resize_document = bool(values.pop("resize_document", False))
    preview = bool(values.pop("preview", False))
    padding = int(values.pop("padding", editor.CONTEXT_PADDING))
    task_values = editor.task_params(task, values)
    scale = editor.output_scale(task, task_values)

    notes = []
    canvas = editor.Rect(0, 0, document.width(), document.height())
    if node.type() in OWN_PIXELS:
        layer_rect = _rect(node.bounds()).intersect(canvas)
        read = node.pixelData
    else:
        layer_rect = canvas
        read = node.projectionPixelData
        notes.append(f"{node.type()} '{node.name()}': its rendered projection was used")
    selection = document.selection()
    sel_rect = _rect(selection).intersect(canvas) if selection is not None else None
    if sel_rect is not None and sel_rect.empty:
        selection, sel_rect = None, None  # an empty selection means the whole layer
    if preview and sel_rect is None:
        sel_rect = preview_rect(layer_rect)
    try:
        # a selection may reach past the layer's painted extent: it is taken on the whole canvas
        region = editor.job_region(layer_rect if sel_rect is None else canvas, sel_rect, padding)
        task_values = editor.canvas_params(task_values, region.sent)
    except ValueError as exc:
        raise RetouchPluginError(str(exc)) from None

    dtype, order = DEPTHS[node.colorDepth()]
    sent = region.sent
    spec = ImageSpec(sent.width, sent.height, dtype, order, editor.transfer_for_profile(node.colorProfile()))
    pixels = bytes(read(sent.x, sent.y, sent.width, sent.height))
    if len(pixels) != spec.nbytes:
        raise RetouchPluginError(f"Krita returned {len(pixels)} bytes for a {sent.width}x{sent.height} "
                                 f"{node.colorDepth()} layer, {spec.nbytes} expected")
    mask = sel_bytes = None
    if selection is not None:
        mask = bytes(selection.pixelData(sent.x, sent.y, sent.width, sent.height))
        target = region.target
        sel_bytes = bytes(selection.pixelData(target.x, target.y, target.width, target.height))
    elif preview:
        mask = _rect_mask(sent, region.target)
    return Request(document, node, task, task_values, model, region, spec, pixels, mask, sel_bytes, scale,
                   resize_document, preview, notes)


def preview_rect(layer: editor.Rect, size: int = 512) -> editor.Rect:
    """Where Preview runs without a selection: the visible part of the active view, else a centre crop."""
    visible = _visible_rect()
    if visible is not None and not visible.intersect(layer).empty:
        return visible.intersect(layer)
    w, h = min(size, layer.width), min(size, layer.height)
    return editor.Rect(layer.x + (layer.width - w) // 2, layer.y + (layer.height - h) // 2, w, h)


def _canvas_widget(window: Any) -> Any:
    """The active view's canvas widget: the one in the MDI area's current subwindow (every open view has one)."""
    qwindow = window.qwindow()
    mdi = qwindow.findChild(QtWidgets.QMdiArea)
    sub = mdi.currentSubWindow() if mdi is not None else None
    for root in ([sub] if sub is not None else []) + [qwindow]:
        canvases = [w for w in root.findChildren(QtWidgets.QWidget)
                    if w.metaObject().className() in CANVAS_CLASSES and w.isVisible()]
        if canvases:
            return canvases[0]
    return None


def _visible_rect() -> editor.Rect | None:
    """The image area the active view's canvas shows (Krita 5.2+ view transforms), or None."""
    try:
        window = Krita.instance().activeWindow()
        view = window.activeView() if window else None
        if view is None or not hasattr(view, "flakeToImageTransform"):
            return None
        canvas = _canvas_widget(window)
        if canvas is None:
            return None
        widget_to_flake = view.flakeToCanvasTransform().inverted()[0]
        rect = view.flakeToImageTransform().mapRect(widget_to_flake.mapRect(QtCore.QRectF(canvas.rect())))
        return editor.Rect(int(rect.x()), int(rect.y()), int(rect.width()), int(rect.height()))
    except Exception:  # the view API differs between versions: the caller falls back to a centre crop
        return None


def zoom_to(document: Any, rect: editor.Rect, fill: float = 0.5) -> editor.Rect | None:
    """Show `rect` (image pixels of `document`) in the middle of its view, about `fill` of the canvas wide.

    Krita's scripting API can zoom but not pan: the canvas's scroll bars do the panning. Returns the image area
    shown afterwards, or None when this Krita cannot (no view of the document, no view transforms)."""
    app = Krita.instance()
    window = app.activeWindow()
    if window is None:
        return None
    view = next((v for v in window.views() if v.document() == document), None)
    if view is None or not hasattr(view, "flakeToImageTransform"):
        return None
    window.showView(view)
    QtWidgets.QApplication.processEvents()
    shown = _visible_rect()
    canvas = _canvas_widget(window)
    if shown is None or canvas is None:
        return None
    factor = fill * min(shown.width / max(1, rect.width), shown.height / max(1, rect.height))
    view.canvas().setZoomLevel(max(0.05, min(view.canvas().zoomLevel() * factor, 32.0)))
    _settle()
    area = canvas.parent()
    while area is not None and not isinstance(area, QtWidgets.QAbstractScrollArea):
        area = area.parent()
    for _ in range(4):  # Krita may still re-centre after a zoom: pan until the rect's centre stays in the middle
        image_to_widget = view.flakeToImageTransform().inverted()[0] * view.flakeToCanvasTransform()
        centre = image_to_widget.map(QtCore.QPointF(rect.x + rect.width / 2, rect.y + rect.height / 2))
        dx, dy = centre.x() - canvas.width() / 2, centre.y() - canvas.height() / 2
        hb, vb = (area.horizontalScrollBar(), area.verticalScrollBar()) if area is not None else (None, None)
        ZOOM_TRACE.append((round(dx), round(dy), area.metaObject().className() if area is not None else None,
                           [hb.minimum(), hb.value(), hb.maximum()] if hb else None,
                           [vb.minimum(), vb.value(), vb.maximum()] if vb else None))
        if area is None or abs(dx) < 2 and abs(dy) < 2:
            break
        for bar, delta in ((hb, dx), (vb, dy)):  # as a user drags it: Krita pans on the slider's signals
            bar.setSliderDown(True)
            bar.setSliderPosition(bar.value() + round(delta))
            bar.setSliderDown(False)
        _settle()
    return _visible_rect()


ZOOM_TRACE: list[tuple[Any, ...]] = []  # (dx, dy, scroll area found) of each panning step, for diagnosis


def _settle(rounds: int = 5) -> None:
    """Let Krita finish what a zoom or a scroll queued (it updates the canvas in deferred steps)."""
    for _ in range(rounds):
        QtWidgets.QApplication.processEvents()
        QtCore.QThread.msleep(20)


def _rect_mask(sent: editor.Rect, target: editor.Rect) -> bytes:
    """A hard mask over `sent` that is 255 inside `target`."""
    inner_x, inner_w = target.x - sent.x, target.width
    row_in = b"\x00" * inner_x + b"\xff" * inner_w + b"\x00" * (sent.width - inner_x - inner_w)
    row_out = b"\x00" * sent.width
    top = target.y - sent.y
    return row_out * top + row_in * target.height + row_out * (sent.height - top - target.height)


def execute(request: Request, client: Client | None = None, on_progress: Callable[[Progress], None] | None = None,
            on_job: Callable[[Job], None] | None = None, cancelled: threading.Event | None = None) -> Result:
    """Send the job and wait for its result (any thread). `on_job` receives the Job so a GUI can cancel it."""
    client = client or make_client()
    job = client.submit(request.task["name"], request.pixels, request.spec, params=request.params,
                        model=request.model, mask=request.mask, preview=request.preview)
    try:
        if on_job is not None:
            on_job(job)
        if cancelled is not None and cancelled.is_set():
            job.cancel()
        result = job.result(on_progress)
    finally:
        job.close()
    want = (request.region.sent.width * request.scale, request.region.sent.height * request.scale)
    if (result.spec.width, result.spec.height) != want or (result.spec.dtype, result.spec.order) != (
            request.spec.dtype, request.spec.order):
        raise RetouchError(f"the daemon returned a {result.spec.width}x{result.spec.height} {result.spec.dtype} "
                           f"{result.spec.order} image; {want[0]}x{want[1]} {request.spec.dtype} "
                           f"{request.spec.order} was expected")
    return result


def apply(request: Request, result: Result) -> Any:
    """Insert the result as a new paint layer above the source, masked by the selection (GUI thread).

    The layer is filled and given its mask before it enters the document, so one undo removes all of it.
    Upscaled results go into a new document unless `resize_document` was asked for.
    """
    s = request.scale
    target = request.region.target.scaled(s)
    inner = request.region.inner.scaled(s)
    pixel_bytes = request.spec.channels * request.spec.itemsize
    pixels = editor.crop_rows(result.pixels, result.spec.row_stride, pixel_bytes, inner)
    name = editor.layer_name(request.task, {**result.info, "scale": s})
    if request.preview:
        name = f"{name} [preview]"

    document, source = request.document, request.node
    if s > 1 and not request.resize_document:
        document = _new_document(request, name)
        parent, above = document.rootNode(), None
        target = editor.Rect(0, 0, target.width, target.height)
    else:
        if s > 1:
            document.scaleImage(document.width() * s, document.height() * s, int(document.xRes()),
                                int(document.yRes()), "Bicubic")
            document.waitForDone()
        parent, above = source.parentNode(), source

    layer = _paint_layer(document, source, name, pixels, target)
    if request.selection is not None:
        mask = document.createTransparencyMask("Selection")
        mask.setSelection(_selection(request.selection, request.region.target, s, target))
        layer.addChildNode(mask, None)
    added = layer
    if result.review is not None:
        # the result and its hidden review layer go in one group: one node added, so one undo removes both
        review = editor.crop_rows(result.review, result.spec.width, 1, inner)
        overlay = _paint_layer(document, source, editor.REVIEW_LAYER,
                               editor.review_pixels(review, request.spec.dtype, request.spec.order), target)
        overlay.setVisible(False)
        if request.selection is not None:
            review_mask = document.createTransparencyMask("Selection")
            review_mask.setSelection(_selection(request.selection, request.region.target, s, target))
            overlay.addChildNode(review_mask, None)
        added = document.createGroupLayer(name)
        added.addChildNode(layer, None)
        added.addChildNode(overlay, layer)
    parent.addChildNode(added, above)
    document.waitForDone()
    document.refreshProjection()
    FLAGS[:] = [(document, flag) for flag in editor.place_flags(result.info.get("flags") or [], inner, target)]
    return layer


def _paint_layer(document: Any, like: Any, name: str, pixels: bytes, at: editor.Rect) -> Any:
    """A new paint layer in `like`'s colour space, filled before it enters the document."""
    layer = document.createNode(name, "paintlayer")
    if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != (
            like.colorModel(), like.colorDepth(), like.colorProfile()):
        layer.setColorSpace(like.colorModel(), like.colorDepth(), like.colorProfile())
    layer.setPixelData(pixels, at.x, at.y, at.width, at.height)
    return layer


def _new_document(request: Request, name: str) -> Any:
    app = Krita.instance()
    src, t = request.node, request.region.target
    doc = app.createDocument(t.width * request.scale, t.height * request.scale, name, src.colorModel(),
                             src.colorDepth(), src.colorProfile(), request.document.resolution())
    NEW_DOCUMENTS.append(doc)  # Krita deletes a created document when its Python wrapper goes away
    window = app.activeWindow()
    if window is not None:
        window.addView(doc)
    return doc


def _selection(data: bytes, rect: editor.Rect, scale: int, at: editor.Rect) -> Any:
    """A Krita Selection from 8-bit selection pixels, enlarged smoothly by `scale` (feathering kept)."""
    if scale > 1:
        image = QtGui.QImage(data, rect.width, rect.height, rect.width, QtGui.QImage.Format.Format_Grayscale8)
        image = image.scaled(at.width, at.height, QtCore.Qt.AspectRatioMode.IgnoreAspectRatio,
                             QtCore.Qt.TransformationMode.SmoothTransformation)
        image = image.convertToFormat(QtGui.QImage.Format.Format_Grayscale8)  # smooth scaling may change it
        bits = image.constBits()
        raw = bits.asstring(image.bytesPerLine() * image.height())
        data = editor.crop_rows(raw, image.bytesPerLine(), 1, editor.Rect(0, 0, at.width, at.height))
    sel = Selection()
    sel.setPixelData(data, at.x, at.y, at.width, at.height)
    return sel


def run(document: Any, node: Any, task: str, params: dict[str, Any] | None = None,
        on_progress: Callable[[Progress], None] | None = None) -> Any:
    """Enhance `node` (or the document's selection of it) and return the new layer. Synchronous.

    `params` takes the task's parameters as the daemon describes them (`retouch tasks`), plus `model` (a model
    name, default: the task's), `resize_document` (upscaling: scale this document instead of opening a new one)
    and `preview` (run on the selection or the visible area only). Raises RetouchError with the reason when the
    job cannot run; the document is then unchanged.
    """
    client = make_client()
    description = editor.find_task(client.tasks(), task)
    request = prepare(document, node, description, params or {})
    LAST_REQUEST[:] = [request]
    result = execute(request, client, on_progress)
    layer = apply(request, result)
    remember(task, params or {})
    return layer


LAST: dict[str, Any] = {}  # the last task and parameters run, for the retouch_run action
FLAGS: list[tuple[Any, editor.PlacedFlag]] = []  # the last result's flags (document, flag): the docker lists them
LAST_REQUEST: list[Request] = []  # the last request run() sent (scripts and tests look at what was sent)


def remember(task: str, params: dict[str, Any]) -> None:
    LAST.clear()
    LAST.update(task=task, params=dict(params))


__all__ = ["FLAGS", "Cancelled", "RetouchError", "RetouchPluginError", "Request", "apply", "execute", "prepare", "run",
           "zoom_to"]
