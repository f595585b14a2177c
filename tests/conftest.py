"""Shared fixtures: every test that needs a daemon gets a real one, on loopback, in a private runtime dir."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_process import start_daemon, stop_daemon
from retouch.client import Client

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def private_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Never touch the user's real runtime dir or model folder."""
    runtime = tmp_path_factory.mktemp("runtime")
    monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("RETOUCH_MODELS_DIR", str(tmp_path_factory.mktemp("models")))
    return runtime


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen]]:
    """One daemon per test module (model loading is the slow part); tests must not stop it."""
    runtime = tmp_path_factory.mktemp("shared-runtime")
    models = tmp_path_factory.mktemp("shared-models")
    proc = start_daemon(runtime, models)
    yield runtime, proc
    stop_daemon(proc)


@pytest.fixture
def client(shared_daemon: tuple[Path, subprocess.Popen], monkeypatch: pytest.MonkeyPatch) -> Client:
    runtime, _ = shared_daemon
    monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(runtime))
    return Client(autostart=False, timeout=30)
