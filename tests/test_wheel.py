"""`python -m build` makes a wheel and an sdist that carry the builtin models; the wheel installs in a fresh venv
and enhances the sample photo there (the venv borrows torch & co. from this environment: no 5 GB download)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
NEEDED = ["retouch/models/retouch-upscale-x2.safetensors", "retouch/models/retouch-denoise.safetensors",
          "retouch/models/builtin.json", "retouch/models/catalog.toml", "retouch/service/retouch.service",
          "retouch/service/org.retouch.daemon.plist", "retouch/service/retouch-startup.cmd",
          "retouch/samples/boats.png", "retouch/editor.py", "retouch/client.py",
          "retouch/models/kernel/retouch-shake-kernel.safetensors"]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir",
                           str(out), str(ROOT)], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def test_wheel_and_sdist_carry_models_and_templates(dist: Path) -> None:
    wheel = next(dist.glob("retouch-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for need in NEEDED:
        assert need in names, f"{need} missing from the wheel"
    assert not any(n.startswith(("tests/", "training/", "krita_plugin/")) for n in names)
    sdist = next(dist.glob("retouch-*.tar.gz"))
    with tarfile.open(sdist) as tf:
        members = tf.getnames()
    for need in NEEDED:
        assert any(m.endswith("daemon/" + need) for m in members), f"{need} missing from the sdist"


def test_wheel_installs_in_a_fresh_venv_and_works(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # borrow torch & co. from this environment: its site-packages go on the venv's path *after* the venv's own,
    # as a plain path (its .pth files, such as an editable install of retouch, are not run)
    own = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    borrowed = [p for p in sys.path if p.endswith("site-packages")]
    Path(own, "zz_borrowed_site.pth").write_text("\n".join(borrowed) + "\n")
    wheel = next(dist.glob("retouch-*.whl"))
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed", str(wheel)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run([str(py), "-c", "import retouch; print(retouch.__file__)"], capture_output=True,
                           text=True, check=True, env=env, cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), f"the venv imported retouch from {where}"
    out = tmp_path / "boats-x2.png"
    sample = Path(where).parent / "samples" / "boats.png"
    retouch = venv / "bin" / "retouch"
    try:
        proc = subprocess.run([str(retouch), "enhance", str(sample), "-o", str(out), "--scale", "2"],
                              capture_output=True, text=True, check=False, env=env, cwd=tmp_path, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    finally:
        subprocess.run([str(retouch), "stop"], capture_output=True, env=env, check=False, timeout=60)
    w, h = Image.open(sample).size
    result = np.asarray(Image.open(out))
    assert result.shape[:2] == (h * 2, w * 2) and result.std() > 10
