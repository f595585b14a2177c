"""The plugin bundles packaging/ builds, and `retouch install-plugin`: real zips, real files, real daemon."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from retouch import install_plugin
from retouch.errors import RetouchError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "packaging"))
import build_plugins  # noqa: E402

sys.path.pop(0)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    return {e: build_plugins.build(e, out, ["linux_x86_64"]) for e in ("krita", "gimp")}


def test_bundles_carry_the_daemons_wire_modules_unchanged(dist: dict[str, Path]) -> None:
    for editor, prefix in (("krita", "retouch_krita/wire/"), ("gimp", "retouch/retouch_gimp/wire/")):
        with zipfile.ZipFile(dist[editor]) as zf:
            for name in build_plugins.WIRE_MODULES:
                assert zf.read(prefix + name) == (ROOT / "daemon" / "retouch" / name).read_bytes()
            names = zf.namelist()
        for py in ("cp310", "cp311", "abi3"):
            assert any(n.startswith(prefix.replace("wire/", f"pyzmq/{py}-linux_x86_64/zmq/")) for n in names), py
        assert not any("numpy" in n or "torch" in n for n in names)


def test_bundle_build_is_reproducible(dist: dict[str, Path], tmp_path: Path) -> None:
    again = build_plugins.build("krita", tmp_path, ["linux_x86_64"])
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(dist["krita"].read_bytes()).digest()


def test_gimp_entry_point_is_executable(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["gimp"]) as zf:
        mode = zf.getinfo("retouch/retouch.py").external_attr >> 16
    assert mode & stat.S_IXUSR


def test_vendored_client_talks_to_a_real_daemon_with_bundled_pyzmq_and_no_numpy(
        dist: dict[str, Path], tmp_path: Path, client) -> None:
    with zipfile.ZipFile(dist["krita"]) as zf:
        zf.extractall(tmp_path)
    code = f"""
import sys, importlib.abc
class NoHeavy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('numpy', 'torch', 'PIL', 'retouch', 'platformdirs'):
            raise ImportError('plugins must not need ' + name)
sys.meta_path.insert(0, NoHeavy())
sys.path = [{str(tmp_path / "retouch_krita")!r}] + [p for p in sys.path if 'site-packages' not in p]
import wire
from wire.client import Client
print(wire.ZMQ_FROM)
print(Client(autostart=False).ping()['pong'])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    zmq_from, pong = proc.stdout.split()
    assert zmq_from.endswith("cp311-linux_x86_64") and pong == "True"


@pytest.fixture
def user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def test_install_krita_enables_the_plugin_and_keeps_kritarc(dist: dict[str, Path], user_dirs: Path) -> None:
    rc = user_dirs / "config" / "kritarc"
    rc.parent.mkdir(parents=True)
    rc.write_text("[General]\nfoo=1\n\n[python]\nenable_other=true\nenable_retouch_krita=false\n\n[Zed]\nz=2\n")
    where = install_plugin.install("krita", dist["krita"])
    assert where == user_dirs / "data" / "krita" / "pykrita" / "retouch_krita"
    assert (where.parent / "retouch.desktop").exists() and (where / "wire" / "client.py").exists()
    settings = json.loads((where / "settings.json").read_text())
    assert sys.executable in settings["daemon_command"] and settings["daemon_command"].endswith("-m retouch")
    text = rc.read_text()
    assert text.count("enable_retouch_krita") == 1 and "enable_retouch_krita=true" in text
    assert "foo=1" in text and "enable_other=true" in text and "[Zed]\nz=2" in text
    assert text.index("enable_retouch_krita=true") < text.index("[Zed]")
    # reinstall replaces in place; nothing left behind
    install_plugin.install("krita", dist["krita"])
    assert sorted(p.name for p in where.parent.iterdir()) == ["retouch.desktop", "retouch_krita"]


def test_install_gimp_into_its_plugin_folder(dist: dict[str, Path], user_dirs: Path) -> None:
    where = install_plugin.install("gimp", dist["gimp"])
    assert where == user_dirs / "config" / "GIMP" / "3.0" / "plug-ins" / "retouch"
    assert os.access(where / "retouch.py", os.X_OK)
    assert (where / "retouch_gimp" / "settings.json").exists()


def test_a_bad_bundle_leaves_the_installed_plugin_alone(dist: dict[str, Path], user_dirs: Path,
                                                         tmp_path: Path) -> None:
    where = install_plugin.install("krita", dist["krita"])
    before = sorted(p.relative_to(where).as_posix() for p in where.rglob("*"))
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(RetouchError, match="not a plugin bundle"):
        install_plugin.install("krita", junk)
    with pytest.raises(RetouchError, match="not a Krita bundle"):
        install_plugin.install("krita", dist["gimp"])
    assert sorted(p.relative_to(where).as_posix() for p in where.rglob("*")) == before
    assert sorted(p.name for p in where.parent.iterdir()) == ["retouch.desktop", "retouch_krita"]


def test_cli_install_plugin(dist: dict[str, Path], user_dirs: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "retouch", "install-plugin", "krita", "--bundle",
                           str(dist["krita"])], capture_output=True, text=True, check=False, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert "Settings > Dockers > Retouch" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "retouch", "install-plugin", "krita", "--bundle", "/nope.zip"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "/nope.zip does not exist" in proc.stderr
