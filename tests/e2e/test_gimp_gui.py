"""The GIMP 3 plug-in's dialog in the real GIMP 3.0.4 GUI under Xvfb: opened from the procedure, OK pressed with
the keyboard, the result layer undone with Ctrl+Z in one step. Leaves docs/gimp-dialog.png with
RETOUCH_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent.parent / "docs"


@pytest.fixture(scope="module")
def gimp_gui(chroot, workdir: Path, gimp_bundle: Path, e2e_daemon: Path) -> tuple[Path, dict]:
    from test_gimp import install_gimp_plugin

    home = install_gimp_plugin(workdir / "gimp-gui-home", gimp_bundle)
    sample = HERE.parent.parent / "daemon" / "retouch" / "samples" / "boats.png"
    rgba = np.asarray(Image.open(sample).convert("RGBA"))
    picture = workdir / "gimp-gui-picture.raw"
    picture.write_bytes(rgba.tobytes())
    for name in ("driver.py", "clicks.sh"):
        shutil.copy2(HERE / "gimp_gui" / name, workdir / f"gimp_gui_{name}")
    out = workdir / "gimp-gui-out"
    env = {"HOME": chroot.inside(home), "XDG_CONFIG_HOME": chroot.inside(home / ".config"),
           "RETOUCH_RUNTIME_DIR": chroot.inside(e2e_daemon), "RETOUCH_E2E_OUT": chroot.inside(out),
           "RETOUCH_E2E_PICTURE": chroot.inside(picture),
           "RETOUCH_E2E_CLICKS": chroot.inside(workdir / "gimp_gui_clicks.sh"), "RETOUCH_DAEMON_COMMAND": "/bin/false"}
    driver = chroot.inside(workdir / "gimp_gui_driver.py")
    proc = chroot.run(["xvfb-run", "-a", "-s", "-screen 0 1280x900x24", "gimp-3.0", "--no-splash",
                       "--batch-interpreter", "python-fu-eval", "-b", f"exec(open({driver!r}).read())"], env,
                      timeout=300)
    result = out / "gui.json"
    assert result.exists(), f"GIMP wrote no result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    state = json.loads(result.read_text())
    assert "error" not in state, state["error"]
    if os.environ.get("RETOUCH_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copy2(out / "gimp-dialog.png", DOCS / "gimp-dialog.png")
        screen = Image.open(out / "gimp-screen.png").convert("RGB")
        screen.crop(screen.getbbox()).save(DOCS / "gimp-window.jpg", quality=85)  # no WM: the rest is black
    return out, state


def test_dialog_ok_adds_a_masked_layer_and_ctrl_z_removes_it(gimp_gui) -> None:
    _, state = gimp_gui
    assert state["status"] == "success", state
    before, after = state["layers_before"], state["layers_after_run"]
    assert after[1:] == before and after[0].startswith("Retouch denoise"), after
    assert state["new_has_mask"]
    assert state["layers_after_undo"] == before, "one Ctrl+Z did not remove the whole result"
    assert state["source_after"] == state["source_before"]


def test_dialog_screenshot(gimp_gui) -> None:
    out, _ = gimp_gui
    shot = np.asarray(Image.open(out / "gimp-dialog.png").convert("L"))
    assert shot.shape[0] > 150 and shot.shape[1] > 200 and shot.std() > 10, "the dialog screenshot is blank"
