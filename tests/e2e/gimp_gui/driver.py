"""Runs inside the real GIMP 3 GUI (under Xvfb, from a -b batch command): the user's path through the dialog.

Opens an image in a display, makes a feathered selection, runs Filters > Enhance > Retouch AI > Denoise
INTERACTIVE (the dialog shows; clicks.sh screenshots it and presses OK), then asks clicks.sh to press Ctrl+Z in
the image window and records the layers before, after the run and after the undo. Results: $RETOUCH_E2E_OUT.
"""

import hashlib
import json
import os
import subprocess
import time
import traceback
from pathlib import Path

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

OUT = Path(os.environ["RETOUCH_E2E_OUT"])
OUT.mkdir(parents=True, exist_ok=True)
state = {}


def names(image):
    return [layer.get_name() for layer in image.get_layers()]


def source_sha(layer):
    buf = layer.get_buffer()
    return hashlib.sha256(bytes(buf.get(Gegl.Rectangle.new(0, 0, 320, 200), 1.0, "R'G'B'A u8",
                                        Gegl.AbyssPolicy.NONE))).hexdigest()


try:
    image = Gimp.Image.new(320, 200, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(image, "Source", 320, 200, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, 320, 200), "R'G'B'A u8", Path(os.environ["RETOUCH_E2E_PICTURE"]).read_bytes())
    buf.flush()
    image.clean_all()
    Gimp.Display.new(image)
    image.select_ellipse(Gimp.ChannelOps.REPLACE, 60, 30, 200, 140)
    Gimp.Selection.feather(image, 10)
    Gimp.displays_flush()
    state["layers_before"] = names(image)
    state["source_before"] = source_sha(layer)
    helper = subprocess.Popen(["sh", os.environ["RETOUCH_E2E_CLICKS"], str(OUT)])
    proc = Gimp.get_pdb().lookup_procedure("retouch-denoise")
    config = proc.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    result = proc.run(config)
    state["status"] = result.index(0).value_nick
    Gimp.displays_flush()
    state["layers_after_run"] = names(image)
    new = [lay for lay in image.get_layers() if lay.get_name().startswith("Retouch")]
    state["new_has_mask"] = bool(new) and new[0].get_mask() is not None
    (OUT / "added").touch()
    for _ in range(120):
        if (OUT / "undone").exists():
            break
        time.sleep(0.5)
    state["layers_after_undo"] = names(image)
    state["source_after"] = source_sha(layer)
    helper.wait(30)
except Exception:
    state["error"] = traceback.format_exc()
(OUT / "gui.json").write_text(json.dumps(state, indent=1))
quit_proc = Gimp.get_pdb().lookup_procedure("gimp-quit")
cfg = quit_proc.create_config()
cfg.set_property("force", True)
quit_proc.run(cfg)
