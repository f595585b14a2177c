"""Krita actions: `retouch_run` (Tools > Scripts > Retouch: Repeat Last Enhancement) repeats the last task."""

from __future__ import annotations

from krita import Extension, Krita  # type: ignore[import-not-found]

from . import core
from .qt import QtWidgets


class RetouchExtension(Extension):
    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:  # noqa: N802 (Krita's name)
        action = window.createAction("retouch_run", "Retouch: Repeat Last Enhancement", "tools/scripts")
        action.triggered.connect(repeat_last)


def repeat_last() -> None:
    """Run the last task again on the active layer (through the docker when it is open, so the UI stays live)."""
    from .docker import DOCKERS

    parent = Krita.instance().activeWindow().qwindow() if Krita.instance().activeWindow() else None
    if not core.LAST:
        QtWidgets.QMessageBox.information(parent, "Retouch", "Run a task from the Retouch docker first.")
        return
    task, params = core.LAST["task"], dict(core.LAST["params"])
    live = [d for d in DOCKERS if d.isVisible()]
    if live:
        live[0].start(preview=False, task_name=task, params=params)
        return
    document = Krita.instance().activeDocument()
    if document is None:
        return
    try:
        core.run(document, document.activeNode(), task, params)
    except Exception as exc:
        QtWidgets.QMessageBox.warning(parent, "Retouch", f"The document is unchanged: {exc}")
