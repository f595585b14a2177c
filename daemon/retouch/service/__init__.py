"""`retouch service install|uninstall|status`: start the daemon at login, from one template per platform.

Linux: a systemd user unit (~/.config/systemd/user/retouch.service), enabled and started with systemctl --user.
macOS: a launchd agent (~/Library/LaunchAgents/org.retouch.daemon.plist), loaded with launchctl.
Windows: a command file in the Startup folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

from ..errors import RetouchError

HERE = Path(__file__).resolve().parent


def platform_kind() -> str:
    return {"win32": "windows", "darwin": "macos"}.get(sys.platform, "linux")


def unit_path(kind: str | None = None) -> Path:
    kind = kind or platform_kind()
    if kind == "windows":
        appdata = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
        return appdata / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "Startup" / "retouch-startup.cmd"
    if kind == "macos":
        return Path.home() / "Library" / "LaunchAgents" / "org.retouch.daemon.plist"
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "systemd" / "user" / "retouch.service"


def render(kind: str | None = None, python: str | None = None) -> str:
    """The unit text for this platform, running `python -m retouch serve` with this Python."""
    kind = kind or platform_kind()
    python = python or sys.executable
    if kind == "windows":
        pythonw = str(Path(python).with_name("pythonw.exe"))
        return Template((HERE / "retouch-startup.cmd").read_bytes().decode()).substitute(pythonw=pythonw)  # CRLF kept
    if kind == "macos":
        log = str(Path.home() / "Library" / "Logs" / "retouch.log")
        return Template((HERE / "org.retouch.daemon.plist").read_text()).substitute(python=python, log=log)
    exec_start = " ".join(f'"{a}"' if " " in a else a for a in (python, "-m", "retouch", "serve"))
    return Template((HERE / "retouch.service").read_text()).substitute(exec_start=exec_start)


def _run(cmd: list[str]) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    return proc.returncode, (proc.stderr or proc.stdout).strip()


def _manager(kind: str, action: str, path: Path) -> list[list[str]]:
    if kind == "linux":
        return {"install": [["systemctl", "--user", "daemon-reload"],
                            ["systemctl", "--user", "enable", "--now", "retouch.service"]],
                "uninstall": [["systemctl", "--user", "disable", "--now", "retouch.service"]]}[action]
    if kind == "macos":
        return {"install": [["launchctl", "load", "-w", str(path)]],
                "uninstall": [["launchctl", "unload", "-w", str(path)]]}[action]
    return []


def install(start: bool = True) -> tuple[Path, list[str]]:
    """Write the unit (replacing an older one) and, unless `start` is False, enable and start it."""
    kind = platform_kind()
    path = unit_path(kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(kind), newline="")
    os.replace(tmp, path)
    notes = []
    if start:
        for cmd in _manager(kind, "install", path):
            if shutil.which(cmd[0]) is None:
                notes.append(f"{cmd[0]} not found: start it yourself with {shlex.join(cmd)}")
                break
            rc, out = _run(cmd)
            if rc != 0:
                notes.append(f"{shlex.join(cmd)} failed: {out}")
                break
    return path, notes


def uninstall(stop: bool = True) -> tuple[Path, list[str]]:
    kind = platform_kind()
    path = unit_path(kind)
    if not path.exists():
        raise RetouchError(f"no Retouch service is installed ({path} does not exist)")
    notes = []
    if stop:
        for cmd in _manager(kind, "uninstall", path):
            if shutil.which(cmd[0]) is not None:
                rc, out = _run(cmd)
                if rc != 0:
                    notes.append(f"{shlex.join(cmd)}: {out}")
    path.unlink()
    if kind == "linux" and stop and shutil.which("systemctl"):
        _run(["systemctl", "--user", "daemon-reload"])
    return path, notes


def status() -> dict[str, object]:
    from ..connection import live_connection

    kind = platform_kind()
    path = unit_path(kind)
    state = "unknown"
    if kind == "linux" and shutil.which("systemctl"):
        _, state = _run(["systemctl", "--user", "is-active", "retouch.service"])
    info = live_connection()
    return {"platform": kind, "unit": str(path), "installed": path.exists(), "manager_state": state,
            "current": path.exists() and path.read_text() == render(kind),
            "daemon_running": info is not None, "daemon_pid": info["pid"] if info else None}
