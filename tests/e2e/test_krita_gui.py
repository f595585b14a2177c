"""The Retouch docker in a real Krita 5.2.9 window under Xvfb, installed from the zip, clicked like a user would.

Also leaves the screenshot the README shows (docs/krita-docker.png) when RETOUCH_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pictures import sign_flag_readings, small_sign
from PIL import Image
from retouch.client import Client
from retouch.protocol import ImageSpec

HERE = Path(__file__).resolve().parent
DOCS = HERE.parent.parent / "docs"
W, H = 320, 200
FACE_SIDE = 320  # the astronaut portrait; MTCNN finds her face at about (114, 40) - (166, 109) there


@pytest.fixture(scope="module")
def gui_run(chroot, workdir: Path, krita_bundle: Path, e2e_daemon: Path) -> tuple[Path, dict]:
    home = workdir / "gui-home"
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    pykrita.mkdir(parents=True)
    shutil.copytree(HERE / "krita_gui" / "retouch_e2e", pykrita / "retouch_e2e")
    shutil.copy2(HERE / "krita_gui" / "retouch_e2e.desktop", pykrita / "retouch_e2e.desktop")
    config = home / ".config"
    config.mkdir()
    (config / "kritarc").write_text("[General]\nLastPreset=x\n\n[python]\nenable_retouch_e2e=true\n")
    # installed the way users install it: retouch install-plugin krita (which also enables it in kritarc)
    installer = subprocess.run([sys.executable, "-m", "retouch", "install-plugin", "krita", "--bundle",
                                str(krita_bundle)], capture_output=True, text=True, check=False,
                               env=dict(os.environ, XDG_DATA_HOME=str(home / ".local" / "share"),
                                        XDG_CONFIG_HOME=str(config)))
    assert installer.returncode == 0, installer.stderr
    assert "enable_retouch_krita=true" in (config / "kritarc").read_text()
    sample = HERE.parent.parent / "daemon" / "retouch" / "samples" / "boats.png"
    rgb = np.asarray(Image.open(sample).convert("RGB").resize((W, H), Image.Resampling.LANCZOS))
    bgra = np.dstack([rgb[:, :, ::-1], np.full((H, W), 255, np.uint8)])
    picture = workdir / "gui-picture.raw"
    picture.write_bytes(bgra.tobytes())
    import skimage.data

    portrait = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((FACE_SIDE, FACE_SIDE),
                                                                            Image.Resampling.LANCZOS))
    sign = small_sign()
    sign_picture = workdir / "gui-sign.raw"
    sign_picture.write_bytes(sign[:, :, [2, 1, 0, 3]].tobytes())  # Krita's U8 layout: BGRA
    face_picture = workdir / "gui-face.raw"
    face_picture.write_bytes(np.dstack([portrait[:, :, ::-1], np.full((FACE_SIDE, FACE_SIDE), 255, np.uint8)])
                             .tobytes())
    out = workdir / "gui-out"
    env = {"HOME": chroot.inside(home), "XDG_DATA_HOME": chroot.inside(home / ".local" / "share"),
           "XDG_CONFIG_HOME": chroot.inside(config), "RETOUCH_RUNTIME_DIR": chroot.inside(e2e_daemon),
           "RETOUCH_E2E_OUT": chroot.inside(out), "RETOUCH_E2E_PICTURE": chroot.inside(picture),
           "RETOUCH_E2E_FACE": chroot.inside(face_picture), "RETOUCH_E2E_FACE_SIDE": str(FACE_SIDE),
           "RETOUCH_E2E_SIGN": chroot.inside(sign_picture), "RETOUCH_E2E_SIGN_SIZE": f"{sign.shape[1]}x{sign.shape[0]}",
           "RETOUCH_DAEMON_COMMAND": "/bin/false"}
    proc = chroot.run(["xvfb-run", "-a", "-s", "-screen 0 1400x900x24", "krita", "--nosplash"], env, timeout=300)
    result = out / "gui.json"
    assert result.exists(), f"Krita wrote no result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    state = json.loads(result.read_text())
    assert "error" not in state, f"{state['error']}\n{state}"
    if os.environ.get("RETOUCH_UPDATE_SCREENSHOTS"):
        DOCS.mkdir(exist_ok=True)
        Image.open(out / "krita-window.png").convert("RGB").save(DOCS / "krita-window.jpg", quality=85)
        shutil.copy2(out / "krita-docker.png", DOCS / "krita-docker.png")
    return out, state


def test_docker_lists_the_daemons_tasks_and_their_parameters(gui_run) -> None:
    _, state = gui_run
    assert state["dockers"] >= 1
    assert {"upscale", "denoise", "sharpen", "restore", "tone"} <= set(state["tasks_listed"])
    assert state["status_line"].startswith("Daemon: running"), state["status_line"]
    assert {"noise_level", "strength", "grain", "color_fix"} <= set(state["params_shown"])


def test_run_button_adds_a_masked_layer_and_one_undo_removes_it(gui_run) -> None:
    _, state = gui_run
    assert state["busy_after_click"], "Run did not switch the docker to busy (the job ran on the GUI thread?)"
    assert state["message"].startswith("Added layer"), state["message"]
    before, after = state["layers_before"], state["layers_after_run"]
    new = [n for n in after if n not in before]
    assert len(new) == 1 and new[0].startswith("Retouch denoise"), after
    assert after.index(new[0]) == after.index("Source") + 1
    assert state["new_layer_children"] == ["transparencymask"]
    assert state["layers_after_undo"] == before, "one undo did not remove the whole result"
    assert state["source_after"] == state["source_before"]


def test_repeat_last_action(gui_run) -> None:
    _, state = gui_run
    assert state["repeat_action"], "no retouch_run action in Krita"
    assert any(n.startswith("Retouch denoise") for n in state["layers_after_repeat"])


def test_screenshots_show_the_docker(gui_run) -> None:
    out, _ = gui_run
    shot = np.asarray(Image.open(out / "krita-docker.png").convert("L"))
    assert shot.shape[0] > 200 and shot.shape[1] > 150 and shot.std() > 10, "the docker screenshot is blank"


def test_cancel_during_a_big_job_adds_nothing(gui_run) -> None:
    _, state = gui_run
    assert state["busy_when_cancelled"]
    assert any(0 < v < 1000 for v in state["progress_values"]), "no progress reached the docker before the end"
    assert state["cancel_message"].startswith("Cancelled"), state["cancel_message"]
    assert state["big_layers_after"] == state["big_layers_before"]
    assert state["new_documents_after"] == state["new_documents_before"]


def test_face_flag_is_listed_and_a_click_zooms_to_it(gui_run) -> None:
    _, state = gui_run
    assert state["faces_message"].startswith("Added layer"), state["faces_message"]
    assert state["flags_visible"], "the docker hid its flag list"
    assert len(state["flags_listed"]) == 1 and state["flags_listed"][0].startswith("face: strength 0.5"), \
        state["flags_listed"]
    (x, y, w, h), = state["flag_rects"]
    assert 95 <= x and x + w <= 185 and 20 <= y and y + h <= 130, state["flag_rects"]  # around her face
    bx, by, bw, bh = state["visible_before_zoom"]
    ax, ay, aw, ah = state["visible_after_zoom"]
    assert aw * ah < bw * bh / 4, (state["visible_before_zoom"], state["visible_after_zoom"])  # zoomed in
    assert ax <= x and ay <= y and x + w <= ax + aw and y + h <= ay + ah, "the flagged face is not in view"
    cx, cy = x + w / 2, y + h / 2
    assert abs(ax + aw / 2 - cx) < aw / 6 and abs(ay + ah / 2 - cy) < ah / 6, "the face is not centred"


def test_text_flag_is_listed_in_the_new_document(gui_run, e2e_daemon: Path) -> None:
    """The sign upscaled x4 with the text guard ticked: the docker lists exactly the daemon's text flag, in its words,
    placed at the daemon's box in the new document the result opened in (4x the sign)."""
    _, state = gui_run
    assert state["text_message"].startswith("Added layer"), state["text_message"]
    sign = small_sign()
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    expected = client.enhance("upscale", sign[:, :, [2, 1, 0, 3]].tobytes(),
                              ImageSpec(sign.shape[1], sign.shape[0], "u8", "BGRA", "srgb"),
                              params={"scale": 4, "text_guard": True})
    texts = [f for f in expected.info.get("flags", []) if f["kind"] == "text"]
    assert sign_flag_readings(texts) == [("88", "8B")], expected.info.get("flags")
    assert state["text_flags_visible"], "the docker hid its flag list"
    listed = [t for t in state["text_flags_listed"] if t.startswith("text")]
    assert len(listed) == len(texts) and all(t.startswith(f["label"]) for t, f in zip(listed, texts, strict=True)), \
        state["text_flags_listed"]
    rects = [r for r, t in zip(state["text_flag_rects"], state["text_flags_listed"], strict=True)
             if t.startswith("text")]
    assert rects == [[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in (f["box"] for f in texts)], rects
    assert state["text_flag_documents"][0] == [4 * sign.shape[1], 4 * sign.shape[0]]
