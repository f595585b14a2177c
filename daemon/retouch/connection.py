"""The connection file through which clients find and authenticate to the daemon (stdlib only: vendored).

`<runtime dir>/retouch/daemon.json` holds `{"transport", "host", "port", "key", "pid", "version"}` and is created
with mode 0600 before anything is written into it. The runtime dir is platformdirs' user runtime dir
(`$XDG_RUNTIME_DIR` on Linux); `RETOUCH_RUNTIME_DIR` overrides it (tests, several daemons side by side).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TypedDict

from .errors import InsecureRuntimeDir
from .protocol import PROTOCOL_VERSION

FILE_NAME = "daemon.json"


class _Optional(TypedDict, total=False):
    curve_serverkey: str  # present when the daemon encrypts with CURVE (remote use)


class ConnectionInfo(_Optional):
    transport: str
    host: str
    port: int
    key: str
    pid: int
    version: int


def runtime_dir() -> Path:
    """Where the connection file lives; created with mode 0700 if missing."""
    override = os.environ.get("RETOUCH_RUNTIME_DIR")
    if override:
        base = Path(override)
    else:
        try:
            import platformdirs

            with warnings.catch_warnings():  # it warns when XDG_RUNTIME_DIR is unset, then falls back sanely
                warnings.simplefilter("ignore")
                base = Path(platformdirs.user_runtime_dir("retouch", appauthor=False))
        except ImportError:  # inside an editor: mirror platformdirs with the stdlib
            base = _stdlib_runtime_dir() / "retouch"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(base)
    return base


def check_private(folder: Path) -> None:
    """Refuse a folder that another user owns or can write: they could read our key or plant a fake daemon."""
    if os.name != "posix":
        return
    st = folder.stat()
    if st.st_uid != os.getuid():
        raise InsecureRuntimeDir(f"refusing runtime dir {folder}: it belongs to uid {st.st_uid}, not to you")
    if st.st_mode & 0o022:
        raise InsecureRuntimeDir(
            f"refusing runtime dir {folder}: others can write to it (mode {st.st_mode & 0o777:o}); "
            f"fix it with: chmod 700 {folder}"
        )


def _stdlib_runtime_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", tempfile.gettempdir())) / "Temp"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "TemporaryItems"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg)
    run_user = Path(f"/run/user/{os.getuid()}")
    return run_user if run_user.is_dir() else Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"


def connection_path() -> Path:
    """`RETOUCH_CONNECTION_FILE` (a copy of a remote daemon's file), else `<runtime dir>/daemon.json`."""
    override = os.environ.get("RETOUCH_CONNECTION_FILE")
    return Path(override) if override else runtime_dir() / FILE_NAME


def new_key() -> str:
    return secrets.token_hex(32)


def write_connection_file(info: ConnectionInfo, path: Path | None = None) -> Path:
    """Write atomically with mode 0600 (the key never touches a world-readable file)."""
    path = path or connection_path()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(info, fh)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_connection_file(path: Path | None = None) -> ConnectionInfo | None:
    """The recorded daemon, or None when there is no file or it is unreadable or half-written."""
    path = path or connection_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    required = {"host": str, "port": int, "key": str, "pid": int, "version": int}
    if not isinstance(data, dict) or any(not isinstance(data.get(k), t) for k, t in required.items()):
        return None
    data.setdefault("transport", "tcp")
    return data  # type: ignore[return-value]


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # type: ignore[attr-defined]
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)  # type: ignore[attr-defined]
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not a live daemon
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def live_connection(path: Path | None = None) -> ConnectionInfo | None:
    """The connection info if its daemon process is alive; None for no file or a stale one (dead pid).

    A remote daemon's pid cannot be checked here: its file is taken as it is."""
    info = read_connection_file(path)
    if info is None or (is_loopback(info["host"]) and not pid_alive(info["pid"])):
        return None
    return info


def endpoint(info: ConnectionInfo) -> str:
    return f"{info['transport']}://{info['host']}:{info['port']}"


def remove_connection_file(pid: int, path: Path | None = None) -> None:
    """Remove the file only if it still names `pid` (never delete another daemon's file)."""
    path = path or connection_path()
    info = read_connection_file(path)
    if info is not None and info["pid"] == pid:
        path.unlink(missing_ok=True)


__all__ = [
    "PROTOCOL_VERSION",
    "ConnectionInfo",
    "connection_path",
    "endpoint",
    "live_connection",
    "new_key",
    "pid_alive",
    "read_connection_file",
    "remove_connection_file",
    "runtime_dir",
    "write_connection_file",
]
