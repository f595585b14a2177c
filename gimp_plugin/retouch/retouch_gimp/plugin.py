"""GIMP 3 procedures: `retouch-enhance` (any task, by name) and one menu entry per task, all one code path.

Menu: Filters > Enhance > Retouch AI > Enhance… / Upscale… / Denoise… / Sharpen… / Tone…
PDB:  retouch-enhance (run-mode, image, drawables, task, scale, strength, grain, face-strength, model,
      resize-image, options) -> new-layer
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, GLib, GObject  # noqa: E402

from . import core  # noqa: E402

ENHANCE = "retouch-enhance"
# Tasks with a menu entry of their own; any other task the daemon offers runs through retouch-enhance by name.
MENU_TASKS = {
    "retouch-upscale": ("upscale", "_Upscale…", "Enlarge 2x or 4x with an AI super-resolution model"),
    "retouch-denoise": ("denoise", "_Denoise…", "Remove sensor noise without smearing texture"),
    "retouch-sharpen": ("sharpen", "_Sharpen / Deblur…", "Recover defocus and camera-shake blur"),
    "retouch-tone": ("tone", "_Tone (exposure, white balance)…", "Fix exposure and colour cast"),
    "retouch-restore": ("restore", "_Restore (scratches, dust, stains)…",
                        "Find scratches, dust and stains on an old photo and fill them in"),
    "retouch-colorize": ("colorize", "_Colorize…", "Give a black-and-white or sepia photo plausible colours"),
    "retouch-face": ("face", "_Faces…", "Find the faces and restore each one; the rest stays as it is"),
}
# the daemon's own default for these tasks: a half-removed scratch helps nobody, and the face task touches faces only
FACE_STRENGTH = {"restore": 1.0, "face": 1.0}
TASK_CHOICES = [(name, label.replace("_", "").rstrip("…")) for name, label, _ in MENU_TASKS.values()]
MENU_PATH = "<Image>/Filters/Enhance/Retouch AI"
RW = GObject.ParamFlags.READWRITE


def _add_arguments(procedure: Any, with_task: bool, face_strength: float = 0.5) -> None:
    if with_task:
        procedure.add_string_argument("task", "_Task", "Task name, as `retouch tasks` lists them "
                                      f"({', '.join(n for n, _ in TASK_CHOICES)}, ...)", "upscale", RW)
    procedure.add_int_argument("scale", "_Scale", "Upscale factor (upscaling tasks)", 1, 8, 2, RW)
    procedure.add_double_argument("strength", "S_trength", "0 = source unchanged, 1 = full result", 0.0, 1.0, 1.0,
                                  RW)
    procedure.add_double_argument("grain", "_Grain", "Film-like grain added to the result", 0.0, 1.0, 0.0, RW)
    procedure.add_double_argument("face-strength", "_Face strength",
                                  "Strength on faces (tasks that treat faces apart)", 0.0, 1.0, face_strength, RW)
    procedure.add_string_argument("model", "_Model", "Model name (empty: the task's default)", "", RW)
    procedure.add_boolean_argument("resize-image", "Scale _this image",
                                   "Upscaling: scale this image instead of opening a new one", False, RW)
    procedure.add_boolean_argument("review", "_Review layer", "Also add a hidden layer \"Retouch review\" that "
                                   "shows in red where the result is not supported by the input", False, RW)
    procedure.add_string_argument("options", "_Options", "More task parameters: NAME=VALUE pairs, e.g. "
                                  "noise_level=10 color_fix=wavelet", "", RW)
    procedure.add_layer_return_value("new-layer", "New layer", "The layer holding the result", True, RW)


class RetouchPlugIn(Gimp.PlugIn):
    def do_query_procedures(self) -> list[str]:
        return [ENHANCE, *MENU_TASKS]

    def do_set_i18n(self, name: str) -> bool:
        return False

    def do_create_procedure(self, name: str) -> Any:
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.set_attribution("Retouch", "Retouch", "2026")
        if name == ENHANCE:
            procedure.set_menu_label("_Enhance (any task)…")
            procedure.set_documentation("Enhance the layer or selection with the Retouch daemon",
                                        "Runs a Retouch task on the active layer (or only the selection) and adds "
                                        "the result as a new layer with a mask from the selection. The source "
                                        "layer is never changed; everything is one undo step.", name)
        else:
            _task, label, blurb = MENU_TASKS[name]
            procedure.set_menu_label(label)
            procedure.set_documentation(blurb + " (Retouch)", blurb + "; same as retouch-enhance with this task.",
                                        name)
        procedure.add_menu_path(MENU_PATH)  # after the label: GIMP needs the label first
        task = MENU_TASKS[name][0] if name in MENU_TASKS else ""
        _add_arguments(procedure, with_task=name == ENHANCE, face_strength=FACE_STRENGTH.get(task, 0.5))
        return procedure

    def run(self, procedure: Any, run_mode: Any, image: Any, drawables: list[Any], config: Any,
            data: Any) -> Any:
        name = procedure.get_name()
        task = config.get_property("task") if name == ENHANCE else MENU_TASKS[name][0]
        if len(drawables) != 1:
            return _error(procedure, f"select exactly one layer (got {len(drawables)})")
        if run_mode == Gimp.RunMode.INTERACTIVE:
            from .dialog import show_dialog

            if not show_dialog(procedure, config, task):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
            if name == ENHANCE:
                task = config.get_property("task")
        values = {key.replace("-", "_"): config.get_property(key)
                  for key in ("scale", "strength", "grain", "face-strength", "model", "resize-image", "options",
                              "review")}
        Gimp.progress_init(f"Retouch: {task}…")
        running: dict[str, Any] = {}
        _cancel_on_exit(running)
        try:
            layer, request = core.enhance(image, drawables[0], str(task), values,
                                          on_progress=lambda p: Gimp.progress_update(p.fraction),
                                          on_job=lambda job: running.update(job=job))
        except Exception as exc:  # every failure is a GIMP message; the image is untouched
            Gimp.progress_end()
            return _error(procedure, f"Retouch {task}: {exc}")
        running.clear()
        Gimp.progress_update(1.0)
        Gimp.progress_end()
        if request.notes:
            Gimp.message("Retouch: " + "; ".join(request.notes))
        if run_mode == Gimp.RunMode.INTERACTIVE and layer.get_image() != image:
            Gimp.Display.new(layer.get_image())
        Gimp.displays_flush()
        values_out = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
        _set_return_layer(values_out, layer)
        return values_out


def _set_return_layer(values: Any, layer: Any) -> None:
    gvalue = GObject.Value(Gimp.Layer, layer)
    values.remove(1)
    values.insert(1, gvalue)


def _error(procedure: Any, message: str) -> Any:
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR,
                                       GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0))


def _cancel_on_exit(running: dict[str, Any]) -> None:
    """GIMP stops a plug-in whose progress the user cancels: tell the daemon to drop the job first."""

    def handler(signum: int, _frame: Any) -> None:
        job = running.get("job")
        if job is not None:
            with contextlib.suppress(Exception):  # best effort: we are being stopped anyway
                job.cancel()
        os._exit(1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, handler)
        except (ValueError, OSError):  # not the main thread, or a platform without it
            pass


def main() -> None:
    Gimp.main(RetouchPlugIn.__gtype__, sys.argv)
