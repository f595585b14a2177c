"""Retouch for Krita: a docker (Settings > Dockers > Retouch) and the scriptable `run()`.

Other scripts use it as:  from retouch_krita import run;  run(doc, doc.activeNode(), "denoise", {})
"""

from __future__ import annotations

from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita  # type: ignore[import-not-found]

from .core import RetouchError, run
from .docker import RetouchDocker
from .extension import RetouchExtension

_app = Krita.instance()
if _app is not None:
    _app.addExtension(RetouchExtension(_app))
    _app.addDockWidgetFactory(DockWidgetFactory("retouch_docker", DockWidgetFactoryBase.DockPosition.DockRight,
                                                RetouchDocker))

__all__ = ["RetouchError", "run"]
