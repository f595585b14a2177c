"""The parameters dialog (GimpProcedureDialog built from the procedure's arguments)."""

from __future__ import annotations

from typing import Any

import gi

gi.require_version("GimpUi", "3.0")
from gi.repository import GimpUi  # noqa: E402

UPSCALING = ("upscale",)


def show_dialog(procedure: Any, config: Any, task: str) -> bool:
    """Show the dialog; True when the user pressed OK."""
    GimpUi.init("retouch")
    enhance = procedure.get_name() == "retouch-enhance"
    names = ["task"] if enhance else []
    if enhance or task in UPSCALING:
        names += ["scale", "resize-image"]
    names += ["strength", "grain"]
    if enhance:
        names += ["face-strength"]
    names += ["review", "model", "options"]
    dialog = GimpUi.ProcedureDialog.new(procedure, config, f"Retouch AI: {task}")
    dialog.fill(names)
    try:
        return bool(dialog.run())
    finally:
        dialog.destroy()
