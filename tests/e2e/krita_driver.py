"""Runs inside a real Krita (kritarunner): builds documents, calls the plugin's own run path, dumps what it finds.

Driven by tests/e2e/test_krita.py through a JSON plan:
    {"out": DIR, "cases": [{"name", "depth", "width", "height", "source", "selection"?, "task", "params",
                            "layer_kind"?, "color_model"?}]}
For each case it writes DIR/<name>.json and raw files next to it: the request the plugin sent (pixels, mask), the new
layer's pixels, its transparency mask, and the source layer after the run. Everything is checked by the host test;
kritarunner's exit code is always 0, so nothing here decides pass or fail.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from krita import Krita, Selection  # type: ignore[import-not-found]


def _write(folder: Path, name: str, data: bytes) -> str:
    (folder / name).write_bytes(bytes(data))
    return name


def run_case(app, case: dict, out: Path) -> dict:
    from retouch_krita import core

    w, h = case["width"], case["height"]
    model = case.get("color_model", "RGBA")
    doc = app.createDocument(w, h, case["name"], model, case["depth"], case.get("profile", ""), 72.0)
    root = doc.rootNode()
    report: dict = {"profile": doc.colorProfile(), "color_model": model}
    source = doc.createNode("Source", "paintlayer")
    if case.get("source"):
        source.setPixelData(Path(case["source"]).read_bytes(), 0, 0, w, h)
    node = source
    if case.get("layer_kind") == "grouplayer":
        node = doc.createNode("Group", "grouplayer")
        root.addChildNode(node, None)
        node.addChildNode(source, None)
    else:
        root.addChildNode(source, None)
    if case.get("selection"):
        sel = Selection()
        sel.setPixelData(Path(case["selection"]).read_bytes(), 0, 0, w, h)
        doc.setSelection(sel)
    doc.waitForDone()
    before = bytes(source.pixelData(0, 0, w, h))
    names_before = [n.name() for n in root.childNodes()]
    n_docs = len(core.NEW_DOCUMENTS)

    request = None
    core.LAST_REQUEST.clear()
    try:  # exactly what other scripts call: run(document, node, task, params) -> the new layer
        layer = core.run(doc, node, case["task"], case["params"])
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        layer = None
    if core.LAST_REQUEST:
        request = core.LAST_REQUEST[0]
        report["notes"] = request.notes
        report["sent"] = list(vars(request.region.sent).values())
        report["target"] = list(vars(request.region.target).values())
        report["spec"] = request.spec.to_header()
        report["scale"] = request.scale
        report["params"] = request.params
        report["request_pixels"] = _write(out, f"{case['name']}.request", request.pixels)
        if request.mask is not None:
            report["request_mask"] = _write(out, f"{case['name']}.reqmask", request.mask)
    doc.waitForDone()
    report["source_unchanged"] = bytes(source.pixelData(0, 0, w, h)) == before
    report["layers_before"] = names_before
    report["layers_after"] = [n.name() for n in root.childNodes()]
    report["documents_added"] = len(core.NEW_DOCUMENTS) - n_docs
    if layer is not None:
        owner = doc
        if report["documents_added"]:
            owner = core.NEW_DOCUMENTS[-1]
            report["new_document"] = [owner.width(), owner.height(), owner.colorDepth(), owner.colorProfile()]
            report["new_document_layers"] = [n.name() for n in owner.rootNode().childNodes()]
        report["document_size"] = [doc.width(), doc.height()]
        t = request.region.target.scaled(request.scale)
        if report["documents_added"]:
            t = type(t)(0, 0, t.width, t.height)
        report["layer"] = {
            "name": layer.name(), "type": layer.type(), "depth": layer.colorDepth(),
            "profile": layer.colorProfile(), "rect": [t.x, t.y, t.width, t.height],
            "has_parent": layer.parentNode() is not None,
            "children": [(c.name(), c.type()) for c in layer.childNodes()],
        }
        report["layer_pixels"] = _write(out, f"{case['name']}.layer", layer.pixelData(t.x, t.y, t.width, t.height))
        parent = layer.parentNode()
        report["parent"] = {"name": parent.name(), "type": parent.type(),
                            "children": [[c.name(), c.type(), c.visible()] for c in parent.childNodes()]}
        reviews = [c for c in parent.childNodes() if c.name() == "Retouch review"]
        if reviews:
            report["review_pixels"] = _write(out, f"{case['name']}.review",
                                             reviews[0].pixelData(t.x, t.y, t.width, t.height))
        masks = [c for c in layer.childNodes() if c.type() == "transparencymask"]
        if masks:
            sel = masks[0].selection()
            report["mask_pixels"] = _write(out, f"{case['name']}.mask", sel.pixelData(t.x, t.y, t.width, t.height))
    return report


def main(*args) -> None:
    plan = json.loads(Path(os.environ["RETOUCH_E2E_PLAN"]).read_text())
    out = Path(plan["out"])
    out.mkdir(parents=True, exist_ok=True)
    app = Krita.instance()
    summary = {"krita": app.version(), "python": sys.version.split()[0]}
    try:
        import retouch_krita.wire as wire

        summary["zmq_from"] = wire.ZMQ_FROM
    except Exception:
        summary["import_error"] = traceback.format_exc()
    for case in plan["cases"]:
        try:
            report = run_case(app, case, out)
        except Exception:
            report = {"crash": traceback.format_exc()}
        (out / f"{case['name']}.json").write_text(json.dumps(report, indent=1))
    (out / "summary.json").write_text(json.dumps(summary))
