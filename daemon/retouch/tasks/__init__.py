"""The task registry: each task is one module, found here by name."""

from __future__ import annotations

from ..errors import UnknownTask, shown
from .base import Param, Task, TaskContext, TaskResult
from .colorize import Colorize
from .denoise import Denoise
from .face import Face
from .restore import Restore
from .sharpen import Sharpen
from .tone import Tone
from .upscale import Upscale

TASKS: dict[str, Task] = {
    task.name: task for task in (Upscale(), Denoise(), Sharpen(), Restore(), Colorize(), Face(), Tone())
}


def get_task(name: object) -> Task:
    if not isinstance(name, str) or name not in TASKS:
        raise UnknownTask(f"unknown task {shown(name)}; available: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "Param", "Task", "TaskContext", "TaskResult", "get_task"]
