"""`retouch service`: the login units rendered from their templates; the Linux unit checked by systemd itself."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from retouch import service


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config"


def test_linux_unit_runs_this_python_and_restarts_on_failure() -> None:
    text = service.render("linux")
    assert f"ExecStart={sys.executable} -m retouch serve" in text
    assert "Restart=on-failure" in text and "WantedBy=default.target" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / "retouch.service"
    unit.write_text(service.render("linux"))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    broken = tmp_path / "broken" / "retouch.service"
    broken.parent.mkdir()
    broken.write_text(service.render("linux", python="/nonexistent/python3"))
    proc = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "not executable" in proc.stderr  # the check is real


def test_launchd_agent_is_a_valid_plist() -> None:
    agent = plistlib.loads(service.render("macos", python="/opt/py/bin/python3").encode())
    assert agent["Label"] == "org.retouch.daemon" and agent["RunAtLoad"] is True
    assert agent["ProgramArguments"] == ["/opt/py/bin/python3", "-m", "retouch", "serve"]


def test_windows_startup_entry_uses_pythonw() -> None:
    text = service.render("windows", python="C:/Py/python.exe")
    assert 'start "" /B "C:/Py/pythonw.exe" -m retouch serve' in text and text.endswith("\r\n")


def test_install_status_uninstall(config: Path) -> None:
    path, notes = service.install(start=False)
    assert path == config / "systemd" / "user" / "retouch.service" and not notes
    state = service.status()
    assert state["installed"] and state["current"]
    path.write_text(path.read_text().replace("Restart=on-failure", "Restart=no"))
    assert not service.status()["current"]
    service.uninstall(stop=False)
    assert not path.exists() and not service.status()["installed"]
    with pytest.raises(Exception, match="no Retouch service is installed"):
        service.uninstall(stop=False)


def test_cli_service(config: Path) -> None:
    env = dict(os.environ)
    run = lambda *a: subprocess.run([sys.executable, "-m", "retouch", "service", *a], capture_output=True,  # noqa: E731
                                    text=True, check=False, env=env)
    assert run("status").returncode == 3
    proc = run("install", "--no-start")
    assert proc.returncode == 0 and "service installed" in proc.stderr
    proc = run("status")
    assert proc.returncode == 0 and "installed" in proc.stdout
    assert run("uninstall", "--no-start").returncode == 0
