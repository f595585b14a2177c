"""`retouch install-plugin krita|gimp`: put a plugin bundle where the editor looks for it, and enable it.

The bundle is a zip built by packaging/build_plugins.py (`--bundle ZIP`); from a source checkout it is built on the
spot. Installing replaces an older copy in one rename (never a half-copied plugin), records how to start this
daemon (`settings.json`, so an editor started from the desktop, without this venv on its PATH, can start it), and
for Krita turns the plugin on in kritarc.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from .editor import platform_key
from .errors import RetouchError

EDITORS = ("krita", "gimp")
SOURCE_ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout, when installed from one


def krita_pykrita_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming")) / "krita" / "pykrita"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "krita" / "pykrita"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "krita" / "pykrita"


def kritarc_path() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "kritarc"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kritarc"


def gimp_plugins_dir() -> Path:
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "GIMP" / "3.0" / "plug-ins"


def daemon_command() -> str:
    """How an editor starts this daemon: this Python with the retouch package."""
    exe = sys.executable
    return f'"{exe}" -m retouch' if " " in exe else f"{exe} -m retouch"


def build_bundle(editor: str, out: Path) -> Path:
    script = SOURCE_ROOT / "packaging" / "build_plugins.py"
    if not script.exists():
        raise RetouchError(f"no {editor} bundle given and no source checkout to build one from: pass "
                           f"--bundle retouch-{editor}.zip (built by packaging/build_plugins.py)")
    sys.path.insert(0, str(script.parent))
    try:
        import build_plugins
    finally:
        sys.path.pop(0)
    return build_plugins.build(editor, out, [platform_key()])


def _replace_dir(new: Path, dest: Path) -> None:
    """Swap `new` in at `dest`; the old copy is removed only after the new one is in place."""
    old = dest.with_name(dest.name + ".old-retouch")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    new.rename(dest)
    if old.exists():
        shutil.rmtree(old)


def _write_settings(folder: Path) -> None:
    (folder / "settings.json").write_text(json.dumps({"daemon_command": daemon_command()}, indent=1) + "\n")


def enable_in_kritarc(path: Path, name: str = "retouch_krita") -> None:
    """Set `enable_<name>=true` in the [python] group of kritarc, leaving every other line as it was."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    key = f"enable_{name}="
    out: list[str] = []
    section = None
    done = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            if section == "[python]" and not done:
                out.append(key + "true")
                done = True
            section = stripped
        elif section == "[python]" and stripped.startswith(key):
            if not done:
                out.append(key + "true")
                done = True
            continue
        out.append(line)
    if not done:
        if section != "[python]":
            if out and out[-1].strip():
                out.append("")
            out.append("[python]")
        out.append(key + "true")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".retouch-tmp")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    tmp.replace(path)


def install(editor: str, bundle: Path | None = None, dest: Path | None = None) -> Path:
    """Install one editor's plugin; returns the folder it went to."""
    if editor not in EDITORS:
        raise RetouchError(f"unknown editor {editor!r}; choose from {', '.join(EDITORS)}")
    with tempfile.TemporaryDirectory(prefix="retouch-plugin-") as tmp:
        zip_path = bundle if bundle is not None else build_bundle(editor, Path(tmp))
        if not zip_path.is_file():
            raise RetouchError(f"plugin bundle {zip_path} does not exist")
        target = dest or (krita_pykrita_dir() if editor == "krita" else gimp_plugins_dir())
        target.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".retouch-new-", dir=target))
        try:
            try:
                with zipfile.ZipFile(zip_path) as zf:
                    for info in zf.infolist():
                        if info.filename.startswith("/") or ".." in Path(info.filename).parts:
                            raise RetouchError(f"{zip_path} holds an unsafe path: {info.filename}")
                    zf.extractall(staging)
                    for info in zf.infolist():  # keep the executable bits (GIMP runs retouch.py directly)
                        mode = (info.external_attr >> 16) & 0o777
                        if mode and not info.is_dir():
                            (staging / info.filename).chmod(mode)
            except zipfile.BadZipFile as exc:
                raise RetouchError(f"{zip_path} is not a plugin bundle: {exc}") from None
            if editor == "krita":
                package = staging / "retouch_krita"
                if not (staging / "retouch.desktop").exists() or not package.is_dir():
                    raise RetouchError(f"{zip_path} is not a Krita bundle (no retouch.desktop + retouch_krita/)")
                _write_settings(package)
                shutil.copy2(staging / "retouch.desktop", target / "retouch.desktop")
                _replace_dir(package, target / "retouch_krita")
                enable_in_kritarc(kritarc_path())
                return target / "retouch_krita"
            folder = staging / "retouch"
            if not (folder / "retouch.py").exists():
                raise RetouchError(f"{zip_path} is not a GIMP bundle (no retouch/retouch.py)")
            _write_settings(folder / "retouch_gimp")
            _replace_dir(folder, target / "retouch")
            return target / "retouch"
        finally:
            shutil.rmtree(staging, ignore_errors=True)
