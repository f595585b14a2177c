"""Plugin settings: how to start the daemon when none runs (written by `retouch install-plugin krita`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .wire.client import Client

SETTINGS_FILE = Path(__file__).resolve().parent / "settings.json"


def load() -> dict[str, Any]:
    try:
        data = json.loads(SETTINGS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def make_client() -> Client:
    """A client that starts the daemon with the command the installer recorded, unless the user set one."""
    command = load().get("daemon_command")
    if command and not os.environ.get("RETOUCH_DAEMON_COMMAND"):
        os.environ["RETOUCH_DAEMON_COMMAND"] = str(command)
    return Client(autostart=True, start_timeout=90.0, timeout=30.0)
