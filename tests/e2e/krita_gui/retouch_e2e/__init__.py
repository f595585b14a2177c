"""Test driver plugin for the real Krita GUI (under Xvfb): uses the Retouch docker the way a user does.

Scenario: a document with a known picture and a selection; the docker picks a task and its Run button is clicked;
the result layer appears (with its transparency mask); Edit > Undo removes it in one step; the `retouch_run`
action repeats the task; screenshots of the window and the docker are saved. Results go to $RETOUCH_E2E_OUT.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from pathlib import Path

from krita import Krita, Selection  # type: ignore[import-not-found]

try:
    from PyQt5 import QtCore
except ImportError:  # Krita 6
    from PyQt6 import QtCore  # type: ignore[no-redef]

OUT = Path(os.environ.get("RETOUCH_E2E_OUT", "/tmp/retouch-e2e-gui"))
STATE: dict = {"log": []}


def log(msg: str) -> None:
    STATE["log"].append(msg)


def finish() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gui.json").write_text(json.dumps(STATE, indent=1))
    os._exit(0)


def wait_for(check, then, timeout_s: float, what: str, step_ms: int = 200) -> None:
    """Poll `check` on the GUI thread's event loop; call `then` when true, give up with a note after timeout."""
    left = [int(timeout_s * 1000 / step_ms)]

    def tick() -> None:
        try:
            if check():
                then()
                return
        except Exception:
            STATE["error"] = traceback.format_exc()
            finish()
            return
        left[0] -= 1
        if left[0] <= 0:
            STATE["error"] = f"timed out waiting for {what}"
            finish()
            return
        QtCore.QTimer.singleShot(step_ms, tick)

    QtCore.QTimer.singleShot(step_ms, tick)


def layer_names(doc) -> list[str]:
    return [n.name() for n in doc.rootNode().childNodes()]


def start() -> None:
    try:
        app = Krita.instance()
        window = app.activeWindow()
        w, h = 320, 200
        doc = app.createDocument(w, h, "retouch-e2e", "RGBA", "U8", "", 72.0)
        STATE["doc"] = doc
        src = doc.createNode("Source", "paintlayer")
        src.setPixelData(Path(os.environ["RETOUCH_E2E_PICTURE"]).read_bytes(), 0, 0, w, h)
        doc.rootNode().addChildNode(src, None)
        window.addView(doc)
        doc.setActiveNode(src)
        sel = Selection()
        sel.select(60, 30, 200, 140, 255)
        doc.setSelection(sel)
        doc.waitForDone()
        STATE["source_before"] = hashlib.sha256(bytes(src.pixelData(0, 0, w, h))).hexdigest()
        STATE["source_bytes"] = len(bytes(src.pixelData(0, 0, w, h)))
        STATE["src"] = src
        from retouch_krita.docker import DOCKERS

        STATE["dockers"] = len(DOCKERS)
        docker = DOCKERS[-1]
        docker.show()
        docker.raise_()
        STATE["docker"] = docker
        log("waiting for the daemon's task list")
        wait_for(lambda: docker.task_box.count() > 0, run_task, 120, "the docker to list the daemon's tasks")
    except Exception:
        STATE["error"] = traceback.format_exc()
        finish()


def run_task() -> None:
    docker, doc = STATE["docker"], STATE["doc"]
    STATE["tasks_listed"] = [docker.task_box.itemData(i) for i in range(docker.task_box.count())]
    STATE["status_line"] = docker.status.text()
    docker.task_box.setCurrentIndex(docker.task_box.findData("denoise"))
    STATE["params_shown"] = sorted(docker.inputs)
    STATE["layers_before"] = layer_names(doc)
    docker.run_button.click()
    STATE["busy_after_click"] = not docker.run_button.isEnabled()
    wait_for(lambda: docker.request is None and docker.run_button.isEnabled(), after_run, 300, "the job")


def after_run() -> None:
    docker, doc = STATE["docker"], STATE["doc"]
    doc.waitForDone()
    STATE["message"] = docker.message.text()
    STATE["layers_after_run"] = layer_names(doc)
    new = [n for n in doc.rootNode().childNodes() if n.name().startswith("Retouch")]
    STATE["new_layer_children"] = [c.type() for c in new[0].childNodes()] if new else []
    window = Krita.instance().activeWindow().qwindow()
    OUT.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(OUT / "krita-window.png"))
    docker.grab().save(str(OUT / "krita-docker.png"))
    Krita.instance().action("edit_undo").trigger()
    wait_for(lambda: True, after_undo, 2, "undo", step_ms=1500)


def after_undo() -> None:
    doc, src = STATE["doc"], STATE["src"]
    doc.waitForDone()
    STATE["layers_after_undo"] = layer_names(doc)
    STATE["source_after"] = hashlib.sha256(bytes(src.pixelData(0, 0, 320, 200))).hexdigest()
    action = Krita.instance().action("retouch_run")
    STATE["repeat_action"] = action is not None
    if action is None:
        finish()
        return
    action.trigger()
    docker = STATE["docker"]
    wait_for(lambda: docker.request is None and docker.run_button.isEnabled()
             and any(n.startswith("Retouch") for n in layer_names(doc)), after_repeat, 300, "the repeated job")


def after_repeat() -> None:
    STATE["layers_after_repeat"] = layer_names(STATE["doc"])
    for key in ("doc", "src", "docker"):
        STATE.pop(key, None)
    finish()


def on_window() -> None:
    QtCore.QTimer.singleShot(3000, start)


Krita.instance().notifier().windowCreated.connect(on_window)
