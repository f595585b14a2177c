"""The Retouch docker: task picker, the task's parameters (read from the daemon), Preview / Run / Cancel.

Krita calls stay on the GUI thread (`core.prepare`, `core.apply`); talking to the daemon (`core.execute`, the
task list, the status) runs on worker threads that hand their results back through Qt signals.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from krita import DockWidget, Krita  # type: ignore[import-not-found]

from . import core
from .qt import QtCore, QtWidgets, Signal
from .settings import make_client
from .wire import editor
from .wire.client import Job
from .wire.errors import Cancelled

DOCKERS: list[RetouchDocker] = []
UPSCALE_TARGETS = (("New document", False), ("Scale this document", True))


class Worker(QtCore.QObject):
    """Runs one callable off the GUI thread; reports through signals (queued onto the GUI thread)."""

    progress = Signal(float, str)
    done = Signal(object)
    failed = Signal(str, bool)  # message, cancelled

    def start(self, work: Callable[[], Any]) -> None:
        threading.Thread(target=self._run, args=(work,), daemon=True).start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            value = work()
        except Cancelled:
            self.failed.emit("Cancelled: the document is unchanged.", True)
        except Exception as exc:  # every failure reaches the user as a message, never as a dead docker
            self.failed.emit(str(exc) or type(exc).__name__, False)
        else:
            self.done.emit(value)


class RetouchDocker(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Retouch")
        self.tasks: list[dict[str, Any]] = []
        self.models: list[dict[str, Any]] = []
        self.inputs: dict[str, Callable[[], Any]] = {}
        self.job: Job | None = None
        self.cancel_event = threading.Event()
        self.request: core.Request | None = None
        self.started = 0.0
        self._build()
        DOCKERS.append(self)
        self.refresh()

    # ---- layout -------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        root = QtWidgets.QWidget(self)
        box = QtWidgets.QVBoxLayout(root)
        self.status = QtWidgets.QLabel("Daemon: connecting…")
        self.status.setWordWrap(True)
        refresh = QtWidgets.QPushButton("Reconnect")
        refresh.clicked.connect(self.refresh)
        head = QtWidgets.QHBoxLayout()
        head.addWidget(self.status, 1)
        head.addWidget(refresh)
        box.addLayout(head)

        form = QtWidgets.QFormLayout()
        self.task_box = QtWidgets.QComboBox()
        self.task_box.currentIndexChanged.connect(self._task_changed)
        form.addRow("Task", self.task_box)
        self.model_box = QtWidgets.QComboBox()
        form.addRow("Model", self.model_box)
        self.target_box = QtWidgets.QComboBox()
        for label, _ in UPSCALE_TARGETS:
            self.target_box.addItem(label)
        form.addRow("Result in", self.target_box)
        box.addLayout(form)
        self.description = QtWidgets.QLabel("")
        self.description.setWordWrap(True)
        box.addWidget(self.description)
        self.params_box = QtWidgets.QGroupBox("Parameters")
        self.params_form = QtWidgets.QFormLayout(self.params_box)
        box.addWidget(self.params_box)

        buttons = QtWidgets.QHBoxLayout()
        self.preview_button = QtWidgets.QPushButton("Preview")
        self.preview_button.setToolTip("Run on the selection, or on the visible area only, into a preview layer")
        self.preview_button.clicked.connect(lambda: self.start(preview=True))
        self.run_button = QtWidgets.QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.start(preview=False))
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        for b in (self.preview_button, self.run_button, self.cancel_button):
            buttons.addWidget(b)
        box.addLayout(buttons)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        box.addWidget(self.progress)
        self.message = QtWidgets.QLabel("Runs on the active layer, or on the selection only. "
                                        "The result arrives as a new masked layer; the source is never changed.")
        self.message.setWordWrap(True)
        box.addWidget(self.message)
        self.flags_box = QtWidgets.QGroupBox("Flags: check these regions")
        flags_layout = QtWidgets.QVBoxLayout(self.flags_box)
        self.flags_list = QtWidgets.QListWidget()
        self.flags_list.setToolTip("Text the result reads differently, faces given a lighter touch: click to zoom")
        self.flags_list.itemClicked.connect(self._zoom_to_flag)
        flags_layout.addWidget(self.flags_list)
        self.flags_box.setVisible(False)
        box.addWidget(self.flags_box)
        box.addStretch(1)
        self.setWidget(root)
        self._set_busy(False)

    def canvasChanged(self, canvas: Any) -> None:  # noqa: N802 (Krita's name)
        pass

    # ---- daemon state -------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.status.setText("Daemon: starting or connecting…")
        worker = Worker(self)
        worker.done.connect(self._connected)
        worker.failed.connect(lambda msg, _c: self.status.setText(f"Daemon: unreachable: {msg}"))

        def fetch() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
            client = make_client()
            return client.status(), client.tasks(), client.models()

        worker.start(fetch)
        self._worker = worker

    def _connected(self, value: tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        status, self.tasks, self.models = value
        self.status.setText(f"Daemon: running (pid {status.get('pid')}, {status.get('device')}, "
                            f"{status.get('precision')})")
        current = self.task_box.currentData()
        self.task_box.blockSignals(True)
        self.task_box.clear()
        for task in self.tasks:
            self.task_box.addItem(str(task.get("label") or task["name"]), task["name"])
        index = max(0, self.task_box.findData(current)) if current else 0
        self.task_box.setCurrentIndex(index)
        self.task_box.blockSignals(False)
        self._task_changed()

    def _task(self) -> dict[str, Any] | None:
        name = self.task_box.currentData()
        return next((t for t in self.tasks if t["name"] == name), None)

    def _task_changed(self, *_: Any) -> None:
        task = self._task()
        while self.params_form.rowCount():
            self.params_form.removeRow(0)
        self.inputs.clear()
        self.model_box.clear()
        if task is None:
            return
        self.description.setText(str(task.get("description", "")))
        self.model_box.addItem(f"Default ({task.get('default_model')})", None)
        if task.get("default_model"):
            self.model_box.addItem("Auto: by content (text kept safe, faces lighter)", "auto")
        for m in self.models:
            if m.get("task") == task["name"]:
                label = str(m["name"])
                if m.get("commercial") is False:  # marked wherever models are listed
                    label += f"  (NON-COMMERCIAL: {m.get('license')})"
                self.model_box.addItem(label, m["name"])
                self.model_box.setItemData(self.model_box.count() - 1, editor.model_summary(m),
                                           QtCore.Qt.ItemDataRole.ToolTipRole)
        for param in task.get("params", []):
            widget, getter = _input_for(param)
            widget.setToolTip(str(param.get("help", "")))
            self.params_form.addRow(str(param["name"]).replace("_", " "), widget)
            self.inputs[param["name"]] = getter
        has_scale = any(p["name"] == "scale" for p in task.get("params", []))
        self.target_box.setEnabled(has_scale)

    def values(self) -> dict[str, Any]:
        params = {name: get() for name, get in self.inputs.items()}
        model = self.model_box.currentData()
        if model:
            params["model"] = model
        params["resize_document"] = UPSCALE_TARGETS[self.target_box.currentIndex()][1]
        return params

    # ---- running ------------------------------------------------------------------------------------------------
    def start(self, preview: bool, task_name: str | None = None, params: dict[str, Any] | None = None) -> None:
        """Prepare on the GUI thread, run the job on a worker, apply when it comes back."""
        if self.job is not None or self.request is not None:
            self.message.setText("A Retouch job is already running: wait for it or cancel it.")
            return
        task = editor.find_task(self.tasks, task_name) if task_name else self._task()
        if task is None:
            self.message.setText("No task: the daemon is not connected yet (press Reconnect).")
            return
        params = dict(self.values() if params is None else params)
        params["preview"] = preview
        document = Krita.instance().activeDocument()
        if document is None:
            self.message.setText("Open a document first.")
            return
        try:
            self.request = core.prepare(document, document.activeNode(), task, params)
        except Exception as exc:
            self.message.setText(str(exc))
            return
        core.remember(task["name"], {k: v for k, v in params.items() if k != "preview"})
        self.cancel_event.clear()
        self.started = time.monotonic()
        self._set_busy(True)
        self.message.setText(f"{task['name']}: sending {self.request.spec.width}×{self.request.spec.height} "
                             "pixels…")
        worker = Worker(self)
        worker.progress.connect(self._progress)
        worker.done.connect(self._finished)
        worker.failed.connect(self._failed)
        request = self.request

        def work() -> Any:
            return core.execute(request, on_progress=lambda p: worker.progress.emit(p.fraction, p.stage),
                                on_job=self._set_job, cancelled=self.cancel_event)

        worker.start(work)
        self._worker = worker

    def _set_job(self, job: Job) -> None:
        self.job = job

    def cancel(self) -> None:
        self.cancel_event.set()
        job = self.job
        if job is not None:
            threading.Thread(target=job.cancel, daemon=True).start()
        self.message.setText("Cancelling…")

    def _progress(self, fraction: float, stage: str) -> None:
        self.progress.setValue(int(fraction * 1000))
        self.message.setText(f"{stage}: {fraction:.0%}")

    def _finished(self, result: Any) -> None:
        """Apply on the GUI thread. The docker stays busy until the layer is in: Krita's waitForDone runs the event
        loop meanwhile, and a second Run must not start inside it."""
        request, self.job = self.request, None
        try:
            layer = core.apply(request, result)
        except Exception as exc:
            self.message.setText(f"Could not add the result: {exc}")
        else:
            seconds = time.monotonic() - self.started
            self.show_flags()
            notes = "; ".join(request.notes)
            self.message.setText(f"Added layer “{layer.name()}” in {seconds:.1f} s."
                                 + (f" ({notes})" if notes else ""))
            self.progress.setValue(1000)
        finally:
            self.request = None
            self._set_busy(False)

    def show_flags(self) -> None:
        """List the last result's flags (core.FLAGS); the box hides when there are none."""
        self.flags_list.clear()
        for index, (_, flag) in enumerate(core.FLAGS):
            r = flag.rect
            item = QtWidgets.QListWidgetItem(f"{flag.label}  ({r.width}×{r.height} at {r.x}, {r.y})")
            item.setData(QtCore.Qt.ItemDataRole.UserRole, index)
            self.flags_list.addItem(item)
        self.flags_box.setVisible(bool(core.FLAGS))

    def _zoom_to_flag(self, item: Any) -> None:
        index = item.data(QtCore.Qt.ItemDataRole.UserRole)
        if index is None or index >= len(core.FLAGS):
            return
        document, flag = core.FLAGS[index]
        if core.zoom_to(document, flag.rect) is None:
            self.message.setText("This Krita cannot zoom to a region from a script (Krita 5.2 or later can).")

    def _failed(self, message: str, cancelled: bool) -> None:
        self.request, self.job = None, None
        self._set_busy(False)
        self.progress.setValue(0)
        self.message.setText(message if cancelled else f"Failed, the document is unchanged: {message}")

    def _set_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.preview_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)


def _input_for(param: dict[str, Any]) -> tuple[QtWidgets.QWidget, Callable[[], Any]]:
    """A widget for one task parameter as the daemon describes it, and how to read its value."""
    kind, default, choices = param.get("kind"), param.get("default"), param.get("choices")
    if choices:
        box = QtWidgets.QComboBox()
        for c in choices:
            box.addItem(str(c), c)
        box.setCurrentIndex(max(0, box.findData(default)))
        return box, box.currentData
    if kind == "bool":
        check = QtWidgets.QCheckBox()
        check.setChecked(bool(default))
        return check, check.isChecked
    if kind in ("int", "float"):
        spin: Any = QtWidgets.QSpinBox() if kind == "int" else QtWidgets.QDoubleSpinBox()
        low = param.get("minimum")
        high = param.get("maximum")
        spin.setRange(low if low is not None else 0, high if high is not None else 2**31 - 1)
        if kind == "float":
            spin.setDecimals(2)
            spin.setSingleStep(0.05 if (high or 0) <= 1 else 1.0)
        auto = default == "auto" and param.get("allow_auto")
        if auto:
            spin.setSpecialValueText("auto")  # the minimum shows as "auto" and means auto
            spin.setMinimum((low if low is not None else 0) - (1 if kind == "int" else 0.01))
            spin.setValue(spin.minimum())

            def read() -> Any:
                return "auto" if spin.value() == spin.minimum() else spin.value()

            return spin, read
        spin.setValue(default if isinstance(default, (int, float)) else 0)
        return spin, spin.value
    line = QtWidgets.QLineEdit("" if default is None else str(default))
    return line, line.text
