"""Starting and stopping a real `retouch serve` for tests (shared by the unit, integration and e2e suites)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from retouch import connection


def start_daemon(runtime: Path, models_dir: Path | None = None, *extra: str) -> subprocess.Popen:
    """`retouch serve` in the foreground as a child process; returns once its connection file is live."""
    env = dict(os.environ, RETOUCH_RUNTIME_DIR=str(runtime))
    if models_dir is not None:
        env["RETOUCH_MODELS_DIR"] = str(models_dir)
    log = open(runtime / "test-daemon.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "retouch", "serve", *extra], env=env, stdout=log, stderr=log)
    path = runtime / "daemon.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = connection.read_connection_file(path)
        if info is not None and info["pid"] == proc.pid:
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited: {(runtime / 'test-daemon.log').read_text()[-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("daemon did not write its connection file within 60 s")


def stop_daemon(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
