"""Build the editor plugin bundles: `dist/retouch-krita.zip` and `dist/retouch-gimp.zip`.

Each bundle holds the plugin's own code, the wire modules vendored from `daemon/retouch/` (the protocol, the
client and the editor helpers: there is no second copy in the source tree), and pyzmq builds for the Pythons the
editors ship (3.10, 3.11 and the abi3 build for 3.12+) on Linux x86_64/aarch64, Windows and macOS, unpacked from
the wheels `pip download --only-binary` fetches. At run time the plugin uses the editor's own pyzmq when it has one,
else the bundled build for its Python (`retouch.editor.ensure_zmq`).

    python packaging/build_plugins.py                     # both bundles, every platform
    python packaging/build_plugins.py --platform linux_x86_64 --out /tmp/dist krita
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "daemon" / "retouch"
PYZMQ_VERSION = "27.3.0"
WIRE_MODULES = ("errors.py", "protocol.py", "connection.py", "client.py", "editor.py")
# bundle platform key -> the wheel platform tag pip is asked for
PLATFORMS = {
    "linux_x86_64": "manylinux_2_28_x86_64",
    "linux_aarch64": "manylinux_2_28_aarch64",
    "win_amd64": "win_amd64",
    "macosx": "macosx_10_15_universal2",
}
# bundle python key -> the Python version pip is asked for
PYTHONS = {"cp310": "3.10", "cp311": "3.11", "abi3": "3.12"}
WHEEL_CACHE = ROOT / "packaging" / ".wheels"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")

WIRE_INIT = '''"""Retouch wire modules, vendored from daemon/retouch by packaging/build_plugins.py: do not edit."""

from pathlib import Path

from .editor import ensure_zmq

ZMQ_FROM = ensure_zmq(Path(__file__).resolve().parent.parent / "pyzmq")
'''


def pyzmq_wheel(python: str, platform_key: str, cache: Path) -> Path:
    """The pyzmq wheel for one Python and platform, downloaded once into the cache."""
    folder = cache / f"{python}-{platform_key}"
    found = sorted(folder.glob(f"pyzmq-{PYZMQ_VERSION}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", f"pyzmq=={PYZMQ_VERSION}", "--only-binary=:all:",
           "--no-deps", "--python-version", PYTHONS[python], "--platform", PLATFORMS[platform_key],
           "--dest", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(folder.glob(f"pyzmq-{PYZMQ_VERSION}-*.whl"))
    if proc.returncode != 0 or not found:
        raise SystemExit(f"could not download pyzmq {PYZMQ_VERSION} for {python} {platform_key}:\n{proc.stderr}")
    return found[0]


def unpack_pyzmq(dest: Path, platforms: list[str], cache: Path) -> list[str]:
    """Unpack zmq/ and its bundled libzmq (pyzmq.libs/ or .dylibs) into dest/<python>-<platform>/."""
    names = []
    for platform_key in platforms:
        for python in PYTHONS:
            wheel = pyzmq_wheel(python, platform_key, cache)
            target = dest / f"{python}-{platform_key}"
            with zipfile.ZipFile(wheel) as zf:
                for member in zf.namelist():
                    if ".dist-info/" in member:
                        continue
                    zf.extract(member, target)
            names.append(f"{target.name}: {wheel.name}")
    return names


def vendor_wire(dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in WIRE_MODULES:
        shutil.copy2(PACKAGE / name, dest / name)
    (dest / "__init__.py").write_text(WIRE_INIT)


def stage_krita(stage: Path, platforms: list[str], cache: Path) -> list[str]:
    """pykrita layout: retouch.desktop + retouch_krita/ (plugin, wire/, pyzmq/)."""
    src = ROOT / "krita_plugin"
    shutil.copy2(src / "retouch.desktop", stage / "retouch.desktop")
    pkg = stage / "retouch_krita"
    shutil.copytree(src / "retouch_krita", pkg, ignore=IGNORED)
    vendor_wire(pkg / "wire")
    return unpack_pyzmq(pkg / "pyzmq", platforms, cache)


def stage_gimp(stage: Path, platforms: list[str], cache: Path) -> list[str]:
    """GIMP 3 layout: retouch/retouch.py (executable) + retouch/retouch_gimp/ (plugin, wire/, pyzmq/)."""
    src = ROOT / "gimp_plugin" / "retouch"
    folder = stage / "retouch"
    shutil.copytree(src, folder, ignore=IGNORED)
    (folder / "retouch.py").chmod(0o755)
    vendor_wire(folder / "retouch_gimp" / "wire")
    return unpack_pyzmq(folder / "retouch_gimp" / "pyzmq", platforms, cache)


STAGERS = {"krita": stage_krita, "gimp": stage_gimp}


def write_zip(stage: Path, out: Path) -> None:
    """A zip with sorted entries and fixed times, so the same sources give the same bytes."""
    tmp = out.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in stage.rglob("*")):
            rel = path.relative_to(stage).as_posix()
            info = zipfile.ZipInfo(rel + ("/" if path.is_dir() else ""), date_time=(2026, 1, 1, 0, 0, 0))
            mode = path.stat().st_mode & 0o777
            info.external_attr = ((0o40000 | mode) << 16 | 0x10) if path.is_dir() else (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, b"" if path.is_dir() else path.read_bytes())
    tmp.replace(out)


def build(editor: str, out_dir: Path, platforms: list[str], cache: Path = WHEEL_CACHE) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"retouch-{editor}-") as tmp:
        stage = Path(tmp)
        wheels = STAGERS[editor](stage, platforms, cache)
        out = out_dir / f"retouch-{editor}.zip"
        write_zip(stage, out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out} ({out.stat().st_size / 1e6:.1f} MB, sha256 {digest[:16]}…): pyzmq {', '.join(wheels)}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("editors", nargs="*", help="which bundles: krita, gimp (default: both)")
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    ap.add_argument("--platform", action="append", choices=list(PLATFORMS),
                    help="pyzmq builds for this platform only (repeatable; default: all)")
    ap.add_argument("--cache", type=Path, default=WHEEL_CACHE, help="where downloaded wheels are kept")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.editors) - set(STAGERS))
    if unknown:
        ap.error(f"unknown editor {', '.join(unknown)}; choose from {', '.join(STAGERS)}")
    for editor in args.editors or list(STAGERS):
        build(editor, args.out, args.platform or list(PLATFORMS), args.cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
