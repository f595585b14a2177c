"""Runs inside a real GIMP 3 (gimp-console, python-fu-eval batch): builds images, calls retouch-enhance through
the PDB in NONINTERACTIVE mode, and dumps what it finds. The host test (test_gimp.py) decides pass or fail; GIMP's
exit code is not a verdict.

Plan ($RETOUCH_E2E_PLAN): {"out": DIR, "cases": [{"name", "precision", "base"?, "width", "height", "source"?,
"babl", "selection"?: [x, y, w, h, feather], "offset"?: [x, y], "task", "args": {...}}]}
"""

import hashlib
import json
import os
import traceback
from pathlib import Path

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

PRECISIONS = {
    "u8-non-linear": Gimp.Precision.U8_NON_LINEAR, "u8-linear": Gimp.Precision.U8_LINEAR,
    "u16-non-linear": Gimp.Precision.U16_NON_LINEAR, "u16-linear": Gimp.Precision.U16_LINEAR,
    "half-linear": Gimp.Precision.HALF_LINEAR, "float-linear": Gimp.Precision.FLOAT_LINEAR,
    "float-non-linear": Gimp.Precision.FLOAT_NON_LINEAR,
}


def rect(x, y, w, h):
    return Gegl.Rectangle.new(x, y, w, h)


def names(image):
    return [layer.get_name() for layer in image.get_layers()]


def run_case(case, out):
    w, h = case["width"], case["height"]
    base = Gimp.ImageBaseType.GRAY if case.get("base") == "gray" else Gimp.ImageBaseType.RGB
    image = Gimp.Image.new_with_precision(w, h, base, PRECISIONS[case["precision"]])
    kind = Gimp.ImageType.GRAYA_IMAGE if base == Gimp.ImageBaseType.GRAY else Gimp.ImageType.RGBA_IMAGE
    source = Gimp.Layer.new(image, "Source", w, h, kind, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(source, None, 0)
    ox, oy = case.get("offset", [0, 0])
    source.set_offsets(ox, oy)
    if case.get("source"):
        buf = source.get_buffer()
        buf.set(rect(0, 0, w, h), case["babl"], Path(case["source"]).read_bytes())
        buf.flush()
    if case.get("indexed"):
        image.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 16, False, False, "")
    if case.get("selection"):
        x, y, sw, sh, feather = case["selection"]
        image.select_ellipse(Gimp.ChannelOps.REPLACE, x, y, sw, sh)
        if feather:
            Gimp.Selection.feather(image, feather)
    report = {"layers_before": names(image)}
    sel = image.get_selection().get_buffer().get(rect(0, 0, w, h), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)
    (out / f"{case['name']}.selection").write_bytes(bytes(sel))
    images_before = len(Gimp.get_images())
    before = bytes(source.get_buffer().get(rect(0, 0, w, h), 1.0, case["babl"], Gegl.AbyssPolicy.NONE))
    if case.get("indexed"):
        before = b""

    proc = Gimp.get_pdb().lookup_procedure(case.get("procedure", "retouch-enhance"))
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [source])
    if case.get("procedure", "retouch-enhance") == "retouch-enhance":
        config.set_property("task", case["task"])
    for key, value in case.get("args", {}).items():
        config.set_property(key, value)
    result = proc.run(config)
    status = result.index(0)
    report["status"] = status.value_nick
    if status != Gimp.PDBStatusType.SUCCESS:
        report["error"] = str(result.index(1)) if result.length() > 1 else ""
        err = Gimp.PDB.get_last_error(Gimp.get_pdb()) if hasattr(Gimp.PDB, "get_last_error") else ""
        report["pdb_error"] = str(err)
    after = bytes(source.get_buffer().get(rect(0, 0, w, h), 1.0, case["babl"], Gegl.AbyssPolicy.NONE))
    report["source_unchanged"] = after == before or case.get("indexed", False)
    report["source_sha"] = hashlib.sha256(after).hexdigest()
    report["layers_after"] = names(image)
    report["image_size"] = [image.get_width(), image.get_height()]
    report["images_added"] = len(Gimp.get_images()) - images_before
    if status == Gimp.PDBStatusType.SUCCESS:
        layer = result.index(1)
        owner = layer.get_image()
        _, lx, ly = layer.get_offsets()
        lw, lh = layer.get_width(), layer.get_height()
        report["layer"] = {"name": layer.get_name(), "rect": [lx, ly, lw, lh], "same_image": owner == image,
                           "owner_size": [owner.get_width(), owner.get_height()],
                           "owner_layers": names(owner), "has_mask": layer.get_mask() is not None,
                           "owner_precision": owner.get_precision().value_nick}
        pixels = layer.get_buffer().get(rect(0, 0, lw, lh), 1.0, case["babl"], Gegl.AbyssPolicy.NONE)
        (out / f"{case['name']}.layer").write_bytes(bytes(pixels))
        if layer.get_mask() is not None:
            mask = layer.get_mask().get_buffer().get(rect(0, 0, lw, lh), 1.0, "Y u8", Gegl.AbyssPolicy.NONE)
            (out / f"{case['name']}.mask").write_bytes(bytes(mask))
        report["paths"] = [path_report(p) for p in owner.get_paths()]
        reviews = [x for x in owner.get_layers() if x.get_name() == "Retouch review"]
        if reviews:
            r = reviews[0]
            report["review"] = {"visible": r.get_visible(), "offsets": list(r.get_offsets()[1:]),
                                "size": [r.get_width(), r.get_height()], "has_mask": r.get_mask() is not None}
            data = r.get_buffer().get(rect(0, 0, r.get_width(), r.get_height()), 1.0, "R'G'B'A u8",
                                      Gegl.AbyssPolicy.NONE)
            (out / f"{case['name']}.review").write_bytes(bytes(data))
    return report


def path_report(path):
    """A path's name, visibility and the bounding box of its first stroke's anchors."""
    strokes = path.get_strokes()
    xs, ys = [], []
    if strokes:
        _, points, closed = path.stroke_get_points(strokes[0])
        xs, ys = list(points[2::6]), list(points[3::6])  # the anchors (each with two handles around it)
    box = [min(xs), min(ys), max(xs), max(ys)] if xs else None
    return {"name": path.get_name(), "visible": path.get_visible(), "box": box, "strokes": len(strokes)}


def main():
    plan = json.loads(Path(os.environ["RETOUCH_E2E_PLAN"]).read_text())
    out = Path(plan["out"])
    out.mkdir(parents=True, exist_ok=True)
    names_seen = [p for p in Gimp.get_pdb().query_procedures(".*", "", "", "", "", "", "", "") if "retouch" in p] \
        if hasattr(Gimp.get_pdb(), "query_procedures") else []
    summary = {"gimp": Gimp.version(), "procedures": names_seen}
    for case in plan["cases"]:
        try:
            report = run_case(case, out)
        except Exception:
            report = {"crash": traceback.format_exc()}
        (out / f"{case['name']}.json").write_text(json.dumps(report, indent=1))
    (out / "summary.json").write_text(json.dumps(summary))


main()
