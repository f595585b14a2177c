"""End-to-end fixtures: the real Krita 5.2 / GIMP 3 in a Debian trixie chroot, a real daemon on the host.

The chroot shares the host's loopback and /proc, so the editors inside reach the daemon outside; the daemon's
runtime dir (its connection file) lives inside the chroot's /tmp so both sides read the same file. Tests skip with
the reason when the chroot is missing (build it with `tests/e2e/editors_chroot.sh`, as root; `.ci/run` does).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from daemon_process import start_daemon, stop_daemon

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
EDITORS_ROOT = Path(os.environ.get("RETOUCH_EDITORS_ROOT", "/var/lib/retouch-trixie"))
MARKER = ".retouch-editors-ready"


@dataclass
class Chroot:
    root: Path

    def inside(self, host_path: Path) -> str:
        """The path a host path inside the chroot has for programs running in it."""
        return "/" + host_path.resolve().relative_to(self.root.resolve()).as_posix()

    def run(self, argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        base = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
        cmd = ["chroot", str(self.root), "env", "-i", *(f"{k}={v}" for k, v in {**base, **env}.items()), *argv]
        # a session of its own, so a timeout kills the editor and its Xvfb too, not only `chroot`
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            err += f"\n[killed after {timeout} s]"
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="session")
def chroot() -> Chroot:
    if not (EDITORS_ROOT / MARKER).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the editor tests, but there is no editors chroot at {EDITORS_ROOT}")
        pytest.skip(f"no editors chroot at {EDITORS_ROOT} (Krita 5.2 and GIMP 3 from Debian trixie): build it with "
                    "`tests/e2e/editors_chroot.sh` as root; .ci/run does")
    if os.geteuid() != 0:
        pytest.skip("the editors chroot needs root to enter")
    proc = subprocess.run(["sh", str(HERE / "editors_chroot.sh"), str(EDITORS_ROOT)], capture_output=True, text=True,
                          check=False)  # re-mounts /proc, /dev after a reboot
    if proc.returncode != 0:
        pytest.fail(f"could not mount the editors chroot: {proc.stderr}")
    return Chroot(EDITORS_ROOT)


@pytest.fixture(scope="session")
def workdir(chroot: Chroot) -> Iterator[Path]:
    """A private folder inside the chroot's /tmp for this test session."""
    tmp = chroot.root / "tmp"
    tmp.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="retouch-e2e-", dir=tmp))
    yield folder
    if not os.environ.get("RETOUCH_E2E_KEEP"):  # keep it to look at what the editors wrote
        shutil.rmtree(folder, ignore_errors=True)


def _build(editor: str, out: Path) -> Path:
    """A plugin bundle as users get it, built by packaging/ (pyzmq for Linux x86_64 only, to keep it short)."""
    sys.path.insert(0, str(ROOT / "packaging"))
    try:
        import build_plugins
    finally:
        sys.path.pop(0)
    return build_plugins.build(editor, out, ["linux_x86_64"])


@pytest.fixture(scope="session")
def krita_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build("krita", tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def gimp_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build("gimp", tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def e2e_daemon(workdir: Path) -> Iterator[Path]:
    """A real daemon on the host whose runtime dir is inside the chroot; yields that runtime dir."""
    runtime = workdir / "run"
    runtime.mkdir(mode=0o700)
    models = workdir / "models"
    models.mkdir()
    proc = start_daemon(runtime, models)
    yield runtime
    stop_daemon(proc)
