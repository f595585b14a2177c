"""The one place that imports Qt: PyQt5 in Krita 5, PyQt6 in Krita 6. Everything else imports Qt from here."""

from __future__ import annotations


def _krita_major() -> int:
    try:
        from krita import Krita

        return int(str(Krita.instance().version()).split(".")[0])
    except Exception:  # outside Krita (docs, linters): take whichever PyQt is installed
        return 0


if _krita_major() >= 6:
    from PyQt6 import QtCore, QtGui, QtWidgets  # type: ignore[import-not-found]

    QT_MAJOR = 6
else:
    try:
        from PyQt5 import QtCore, QtGui, QtWidgets  # type: ignore[import-not-found,no-redef]

        QT_MAJOR = 5
    except ImportError:
        from PyQt6 import QtCore, QtGui, QtWidgets  # type: ignore[import-not-found,no-redef]

        QT_MAJOR = 6

Signal = QtCore.pyqtSignal
Qt = QtCore.Qt

__all__ = ["QT_MAJOR", "QtCore", "QtGui", "QtWidgets", "Qt", "Signal"]
