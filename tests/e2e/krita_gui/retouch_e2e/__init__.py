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
    """Kept in the result and appended to trace.txt at once, so a hang shows where it happened."""
    import time

    STATE["log"].append(msg)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "trace.txt", "a") as f:
        f.write(f"{time.monotonic():.2f} {msg}\n")


def finish() -> None:
    """Write what was found (Krita objects dropped) and leave at once, without save-changes prompts."""
    try:
        OUT.mkdir(parents=True, exist_ok=True)
        plain = {k: v for k, v in STATE.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}
        (OUT / "gui.json").write_text(json.dumps(plain, indent=1, default=str))
    finally:
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
        STATE["progress_values"] = []
        docker.progress.valueChanged.connect(STATE["progress_values"].append)
        log("waiting for the daemon's task list")
        wait_for(lambda: docker.task_box.count() > 0, run_task, 120, "the docker to list the daemon's tasks")
    except Exception:
        STATE["error"] = traceback.format_exc()
        finish()


def run_task() -> None:
    log("run_task")
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
    log("after_run")
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
    log("after_undo")
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
    STATE["message_after_repeat"] = docker.message.text()
    wait_for(lambda: docker.request is None and docker.run_button.isEnabled()
             and any(n.startswith("Retouch") for n in layer_names(doc)), after_repeat, 300, "the repeated job")


def after_repeat() -> None:
    log("after_repeat")
    """A big job, cancelled from the docker while it runs: nothing may be added anywhere."""
    STATE["layers_after_repeat"] = layer_names(STATE["doc"])
    app = Krita.instance()
    from retouch_krita import core

    big = app.createDocument(900, 900, "retouch-e2e-big", "RGBA", "U8", "", 72.0)
    STATE["big"] = big
    STATE["new_documents_before"] = len(core.NEW_DOCUMENTS)
    show_with_layer(big, "Noise", os.urandom(900 * 900 * 4), start_big)
    STATE["big_layers_before"] = layer_names(big)


def show_with_layer(doc, layer_name: str, pixels: bytes, then) -> None:
    """Give `doc` one paint layer of `pixels`, open a view of it, and call `then` once it is the active one."""
    app = Krita.instance()
    layer = doc.createNode(layer_name, "paintlayer")
    layer.setPixelData(pixels, 0, 0, doc.width(), doc.height())
    doc.rootNode().addChildNode(layer, None)
    app.activeWindow().addView(doc)
    doc.setActiveNode(layer)
    wait_for(lambda: (app.activeDocument() is not None and app.activeDocument().name() == doc.name()
                      and app.activeDocument().activeNode() is not None
                      and app.activeDocument().activeNode().name() == layer_name),
             then, 30, f"{doc.name()} to become active")


def start_big() -> None:
    log("start_big")
    docker = STATE["docker"]
    docker.start(preview=False, task_name="upscale", params={"scale": 4, "ensemble": True})
    STATE["message_after_big_start"] = docker.message.text()
    wait_for(lambda: docker.job is not None, lambda: QtCore.QTimer.singleShot(2000, cancel_it), 120,
             "the big job to be accepted", step_ms=50)


def cancel_it() -> None:
    log("cancel_it")
    docker = STATE["docker"]
    STATE["busy_when_cancelled"] = not docker.run_button.isEnabled()
    docker.cancel_button.click()
    wait_for(lambda: docker.run_button.isEnabled(), after_cancel, 120, "the cancellation")


def after_cancel() -> None:
    log("after_cancel")
    from retouch_krita import core

    docker, big = STATE["docker"], STATE["big"]
    big.waitForDone()
    STATE["cancel_message"] = docker.message.text()
    STATE["big_layers_after"] = layer_names(big)
    STATE["new_documents_after"] = len(core.NEW_DOCUMENTS)
    start_faces()


def start_faces() -> None:
    """A portrait: the daemon flags the face it gave a lighter touch; the docker lists it; a click zooms there."""
    log("start_faces")
    side = int(os.environ["RETOUCH_E2E_FACE_SIDE"])
    open_picture("faces", side, side, "Portrait", os.environ["RETOUCH_E2E_FACE"], run_faces)


def open_picture(key: str, width: int, height: int, layer_name: str, raw: str, then) -> None:
    """A new U8 RGBA document (STATE[key]) with one paint layer of the BGRA pixels in file `raw`; then `then`."""
    doc = Krita.instance().createDocument(width, height, f"retouch-e2e-{key}", "RGBA", "U8", "", 72.0)
    STATE[key] = doc
    show_with_layer(doc, layer_name, Path(raw).read_bytes(), then)


def run_job(task_name: str, params: dict, then, what: str) -> None:
    """Start a job from the docker on the active layer and call `then` once the docker says how it ended."""
    docker = STATE["docker"]
    docker.start(preview=False, task_name=task_name, params=params)
    wait_for(lambda: docker.request is None and docker.run_button.isEnabled()
             and docker.message.text().startswith(("Added layer", "Failed", "Could not")), then, 300, what)


def record_flags(message_key: str, prefix: str) -> None:
    """The docker's message (STATE[message_key]), its flag list and where each flag was placed (under `prefix`)."""
    from retouch_krita import core

    docker = STATE["docker"]
    STATE[message_key] = docker.message.text()
    STATE[f"{prefix}flags_visible"] = docker.flags_box.isVisible()
    STATE[f"{prefix}flags_listed"] = [docker.flags_list.item(i).text() for i in range(docker.flags_list.count())]
    STATE[f"{prefix}flag_rects"] = [[f.rect.x, f.rect.y, f.rect.width, f.rect.height] for _, f in core.FLAGS]
    STATE[f"{prefix}flag_documents"] = [(d.width(), d.height()) for d, _ in core.FLAGS]


def run_faces() -> None:
    log("run_faces")
    run_job("denoise", {"noise_level": 5}, after_faces, "the portrait job")


def after_faces() -> None:
    log("after_faces")
    from retouch_krita import core

    record_flags("faces_message", "")
    before = core._visible_rect()
    STATE["visible_before_zoom"] = [before.x, before.y, before.width, before.height] if before else None
    docker = STATE["docker"]
    if docker.flags_list.count():
        docker.flags_list.itemClicked.emit(docker.flags_list.item(0))
    QtCore.QTimer.singleShot(1500, after_zoom)


def after_zoom() -> None:
    log("after_zoom")
    from retouch_krita import core

    after = core._visible_rect()
    STATE["visible_after_zoom"] = [after.x, after.y, after.width, after.height] if after else None
    STATE["message_after_zoom"] = STATE["docker"].message.text()
    STATE["zoom_trace"] = [list(t) for t in core.ZOOM_TRACE]
    start_text()


def start_text() -> None:
    """A small sign upscaled x4 with the text guard ticked: the daemon flags the reading it changed; the docker
    lists the text flag, placed in the new document the result opened in."""
    log("start_text")
    width, height = (int(v) for v in os.environ["RETOUCH_E2E_SIGN_SIZE"].split("x"))
    open_picture("sign", width, height, "Sign", os.environ["RETOUCH_E2E_SIGN"],
                 lambda: run_job("upscale", {"scale": 4, "text_guard": True}, after_text, "the sign job"))


def after_text() -> None:
    log("after_text")
    record_flags("text_message", "text_")
    for key in ("doc", "src", "docker", "big", "faces", "sign"):
        STATE.pop(key, None)
    finish()


def on_window() -> None:
    QtCore.QTimer.singleShot(3000, start)


Krita.instance().notifier().windowCreated.connect(on_window)
