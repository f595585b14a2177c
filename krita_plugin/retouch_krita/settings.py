"""Plugin settings: how to start the daemon when none runs (written by `retouch install-plugin krita`)."""

from __future__ import annotations

from pathlib import Path

from .wire import editor
from .wire.client import Client

SETTINGS_FILE = Path(__file__).resolve().parent / "settings.json"


def make_client() -> Client:
    return editor.make_client(SETTINGS_FILE)
