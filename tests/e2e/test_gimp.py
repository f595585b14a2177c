"""The GIMP 3 plug-in in the real GIMP 3.0.4 (gimp-console, batch mode), called through the PDB, real daemon.

Installed with `retouch install-plugin gimp` from the zip packaging/ builds, with the pyzmq that zip carries (the
chroot has none). Each case makes an image in one precision with a known picture and a feathered selection, calls
`retouch-enhance` NONINTERACTIVE, and the host checks: the new layer holds exactly the daemon's result for the
pixels GIMP held, sits directly above the source with a layer mask equal to the selection, and the source is
unchanged byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pictures import LAMP_TRACE, bounding_box, close_to_scaled, photo, shaken_lamp_photo, sign_flag_readings, small_sign
from retouch import editor
from retouch.client import Client
from retouch.protocol import ImageSpec
from retouch.quality import psnr_y

HERE = Path(__file__).resolve().parent
W, H = 120, 90
# GIMP precision -> (Babl format the plug-in uses, wire dtype, transfer)
FORMATS = {"u8-non-linear": ("R'G'B'A u8", "u8", "srgb"), "u16-linear": ("RGBA u16", "u16", "linear"),
           "u16-non-linear": ("R'G'B'A u16", "u16", "srgb"), "half-linear": ("RGBA half", "f16", "linear"),
           "float-linear": ("RGBA float", "f32", "linear")}
SELECTION = [45, 15, 70, 60, 8]  # ellipse x, y, w, h reaching near the right edge; feather radius

CASES: list[dict[str, Any]] = [
    {"name": "u8_denoise_selection", "precision": "u8-non-linear", "task": "denoise", "selection": SELECTION,
     "args": {"options": "noise_level=10"}},
    {"name": "u16_linear_denoise_selection", "precision": "u16-linear", "task": "denoise", "selection": SELECTION,
     "args": {"strength": 0.7, "options": "noise_level=10"}},
    {"name": "u16_sharpen_layer", "precision": "u16-non-linear", "task": "sharpen", "args": {}},
    {"name": "half_tone_selection", "precision": "half-linear", "task": "tone", "selection": SELECTION, "args": {}},
    {"name": "float_denoise_offset_layer", "precision": "float-linear", "task": "denoise", "offset": [7, 5],
     "selection": SELECTION, "args": {"grain": 0.2, "options": "noise_level=5 grain_seed=3"}},
    {"name": "u8_upscale_new_image", "precision": "u8-non-linear", "task": "upscale", "selection": SELECTION,
     "args": {"scale": 2}},
    {"name": "u16_upscale_resize_image", "precision": "u16-non-linear", "task": "upscale",
     "args": {"scale": 2, "resize-image": True}},
    {"name": "menu_denoise_procedure", "precision": "u8-non-linear", "procedure": "retouch-denoise",
     "task": "denoise", "selection": SELECTION, "args": {"strength": 0.5}},
    {"name": "menu_restore_procedure", "precision": "u8-non-linear", "procedure": "retouch-restore",
     "task": "restore", "selection": SELECTION, "args": {"options": "grow=1"}},
    {"name": "menu_colorize_procedure", "precision": "u8-non-linear", "procedure": "retouch-colorize",
     "task": "colorize", "args": {}},
    {"name": "colorize_gray_refused", "precision": "u8-non-linear", "base": "gray", "task": "colorize", "args": {}},
    {"name": "gray_denoise", "precision": "u8-non-linear", "base": "gray", "task": "denoise", "args": {}},
    {"name": "indexed_refused", "precision": "u8-non-linear", "indexed": True, "task": "denoise", "args": {}},
    {"name": "typo_refused", "precision": "u8-non-linear", "task": "denoise", "args": {"options": "noise_levl=3"}},
    {"name": "blur_trace_refused", "precision": "u8-non-linear", "task": "sharpen",
     "args": {"options": "blur_trace=10,10,30,30"}},
    {"name": "blur_trace_outside_refused", "precision": "u8-non-linear", "task": "sharpen", "selection": SELECTION,
     "args": {"options": "blur_trace=0,0,10,10"}},
    {"name": "blur_trace_in_image_pixels", "precision": "u8-non-linear", "task": "sharpen", "selection": SELECTION,
     "picture": "shaken_lamp", "args": {"options": "blur_trace=" + ",".join(map(str, LAMP_TRACE))}},
    {"name": "sharpen_blur_motion", "precision": "u8-non-linear", "task": "sharpen", "picture": "shaken_lamp",
     "args": {"options": "blur=motion"}},
    {"name": "review_layer", "precision": "u8-non-linear", "task": "denoise", "selection": SELECTION,
     "args": {"review": True, "options": "noise_level=10"}},
    {"name": "unknown_task_refused", "precision": "u8-non-linear", "task": "paint", "args": {}},
    {"name": "face_flag_path", "precision": "u8-non-linear", "task": "denoise", "picture": "astronaut",
     "args": {"options": "noise_level=5"}},
    {"name": "menu_face_procedure", "precision": "u8-non-linear", "procedure": "retouch-face", "task": "face",
     "picture": "astronaut", "args": {}},
    {"name": "text_flag_path", "precision": "u8-non-linear", "task": "upscale", "picture": "sign",
     "args": {"scale": 4, "options": "text_guard=true"}},
]
GOOD = [c for c in CASES if "refused" not in c["name"] and "picture" not in c and c["name"] != "review_layer"]
ASTRONAUT = 256  # the astronaut picture's side; MTCNN finds her face at about (89, 30) - (135, 88) there


def shaken_lamp_rgba() -> tuple[np.ndarray, np.ndarray]:
    """(the sharp picture as RGB, its shaken copy as RGBA), u8."""
    sharp, shaken = shaken_lamp_photo(W, H)
    return sharp, np.dstack([shaken, np.full((H, W), 255, np.uint8)])


def gimp_batch(chroot, workdir: Path, home: Path, cases: list[dict], runtime: Path, tag: str) -> Path:
    inputs = workdir / f"gimp-inputs-{tag}"
    inputs.mkdir()
    out = workdir / f"gimp-out-{tag}"
    plan_cases = []
    for case in cases:
        babl, dtype, transfer = FORMATS[case["precision"]]
        src = inputs / f"{case['name']}.src"
        if case.get("picture") == "astronaut":
            src.write_bytes(astronaut_rgba(ASTRONAUT).tobytes())
            plan_cases.append(dict(case, width=ASTRONAUT, height=ASTRONAUT, babl=babl, source=chroot.inside(src)))
            continue
        if case.get("picture") == "sign":
            sign = small_sign()
            src.write_bytes(sign.tobytes())
            plan_cases.append(dict(case, width=sign.shape[1], height=sign.shape[0], babl=babl,
                                   source=chroot.inside(src)))
            continue
        if case.get("picture") == "shaken_lamp":
            src.write_bytes(shaken_lamp_rgba()[1].tobytes())
            plan_cases.append(dict(case, width=W, height=H, babl=babl, source=chroot.inside(src)))
            continue
        src.write_bytes(photo(W, H, dtype, "RGBA", transfer).tobytes())
        plan_cases.append(dict(case, width=W, height=H, babl=babl, source=chroot.inside(src)))
    plan = workdir / f"gimp-plan-{tag}.json"
    plan.write_text(json.dumps({"out": chroot.inside(out), "cases": plan_cases}))
    (workdir / "gimp_driver.py").write_bytes((HERE / "gimp_driver.py").read_bytes())
    env = {"HOME": chroot.inside(home), "XDG_CONFIG_HOME": chroot.inside(home / ".config"),
           "RETOUCH_RUNTIME_DIR": chroot.inside(runtime), "RETOUCH_E2E_PLAN": chroot.inside(plan),
           "RETOUCH_DAEMON_COMMAND": "/bin/false"}
    driver = chroot.inside(workdir / "gimp_driver.py")
    proc = chroot.run(["gimp-console-3.0", "-i", "--quit", "--batch-interpreter", "python-fu-eval", "-b",
                       f"exec(open({driver!r}).read())"], env, timeout=600)
    assert (out / "summary.json").exists(), f"GIMP wrote no summary:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out


def astronaut_rgba(side: int) -> np.ndarray:
    """scikit-image's astronaut (one face), side x side, 8-bit RGBA."""
    import skimage.data
    from PIL import Image

    rgb = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.Resampling.LANCZOS))
    return np.dstack([rgb, np.full((side, side), 255, np.uint8)])


def install_gimp_plugin(home: Path, bundle: Path) -> Path:
    """A GIMP profile with the plug-in installed the way users install it: retouch install-plugin gimp."""
    (home / ".config").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "retouch", "install-plugin", "gimp", "--bundle", str(bundle)],
                          capture_output=True, text=True, check=False,
                          env=dict(os.environ, XDG_CONFIG_HOME=str(home / ".config")))
    assert proc.returncode == 0, proc.stderr
    return home


@pytest.fixture(scope="module")
def gimp_home(workdir: Path, gimp_bundle: Path) -> Path:
    return install_gimp_plugin(workdir / "gimp-home", gimp_bundle)


@pytest.fixture(scope="module")
def gimp_run(chroot, workdir: Path, gimp_home: Path, e2e_daemon: Path) -> Path:
    return gimp_batch(chroot, workdir, gimp_home, CASES, e2e_daemon, "main")


def report(out: Path, name: str) -> dict:
    data = json.loads((out / f"{name}.json").read_text())
    assert "crash" not in data, data["crash"]
    return data


def test_procedures_are_registered(gimp_run: Path) -> None:
    summary = json.loads((gimp_run / "summary.json").read_text())
    assert summary["gimp"].startswith("3.0")
    assert {"retouch-enhance", "retouch-upscale", "retouch-denoise", "retouch-sharpen",
            "retouch-tone", "retouch-restore", "retouch-colorize", "retouch-face"} <= set(summary["procedures"])


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c["name"])
def test_result_layer(case: dict, gimp_run: Path, e2e_daemon: Path) -> None:
    out = gimp_run
    rep = report(out, case["name"])
    assert rep["status"] == "success", rep
    resized = bool(case["args"].get("resize-image"))
    assert rep["source_unchanged"] or resized, "the source layer changed"
    babl, dtype, transfer = FORMATS[case["precision"]]
    scale = int(case["args"].get("scale", 1)) if case["task"] == "upscale" else 1
    layer = rep["layer"]
    assert layer["name"].startswith(f"Retouch {case['task']}")

    # the request the plug-in must have sent: GIMP's pixels over the padded selection box, the selection as mask
    sel = np.frombuffer((out / f"{case['name']}.selection").read_bytes(), np.uint8).reshape(H, W)
    ox, oy = case.get("offset", [0, 0])
    src = photo(W, H, dtype, "RGBA", transfer)
    canvas = np.zeros((H, W, 4), src.dtype)  # the layer on the image canvas (transparent where it is not)
    canvas[oy:, ox:] = src[:H - oy, :W - ox]
    has_sel = bool(sel.any())
    region = editor.job_region(editor.Rect(ox, oy, W - ox, H - oy) if not has_sel else editor.Rect(0, 0, W, H),
                               editor.Rect(*bounding_box(sel)) if has_sel else None)
    s = region.sent
    spec = ImageSpec(s.width, s.height, dtype, "RGBA", transfer)
    mask = sel[s.y:s.bottom, s.x:s.right].tobytes() if has_sel else None
    params = {k: v for k, v in case["args"].items() if k in ("scale", "strength", "grain")}
    params.update({k: int(v) for k, v in (item.split("=") for item in case["args"].get("options", "").split())})
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    if case.get("base") != "gray":  # gray layers hold GIMP's own conversion of the picture
        expected = client.enhance(case["task"], canvas[s.y:s.bottom, s.x:s.right].tobytes(), spec, params=params,
                                  mask=mask)
        want = editor.crop_rows(expected.pixels, expected.spec.row_stride, 4 * spec.itemsize,
                                region.inner.scaled(scale))
        got = (out / f"{case['name']}.layer").read_bytes()
        assert got == want, "the new layer's pixels differ from the daemon's result"

    t = region.target.scaled(scale)
    if scale > 1 and not resized:
        assert rep["images_added"] == 1 and not layer["same_image"]
        assert layer["owner_size"] == [t.width, t.height] and layer["rect"] == [0, 0, t.width, t.height]
        assert layer["owner_precision"] == case["precision"]
        assert rep["image_size"] == [W, H], "the source image was resized"
    else:
        assert layer["same_image"] and rep["images_added"] == 0
        assert layer["rect"] == [t.x, t.y, t.width, t.height]
        before = rep["layers_before"]
        assert rep["layers_after"] == [layer["name"], *before], "not directly above the source"
        if resized:
            assert rep["image_size"] == [W * scale, H * scale]

    assert layer["has_mask"] == has_sel
    if has_sel:
        m = np.frombuffer((out / f"{case['name']}.mask").read_bytes(), np.uint8)
        rt = region.target
        sel_t = sel[rt.y:rt.bottom, rt.x:rt.right]
        if scale == 1:
            assert m.tobytes() == sel_t.tobytes(), "the layer mask differs from the selection"
        else:
            close_to_scaled(m, sel_t, scale)


@pytest.mark.parametrize("name,words", [("indexed_refused", ["indexed", "RGB"]),
                                        ("typo_refused", ["noise_levl", "noise_level"]),
                                        # the commas reach the daemon inside the value: the box is read, and refused
                                        ("blur_trace_refused", ["blur_trace region 10,10,30,30", "no point of light"]),
                                        # in image pixels, left of the selection plus its context
                                        ("blur_trace_outside_refused", ["blur_trace box 0,0,10,10",
                                                                        "not inside the area sent"]),
                                        ("unknown_task_refused", ["'paint'", "upscale"]),
                                        ("colorize_gray_refused", ["Colorize", "grayscale", "Image > Mode > RGB"])])
def test_bad_input_is_refused_with_a_reason(gimp_run: Path, name: str, words: list[str]) -> None:
    rep = report(gimp_run, name)
    assert rep["status"] != "success"
    message = rep.get("error", "") + rep.get("pdb_error", "")
    for w in words:
        assert w in message, message
    assert rep["source_unchanged"] and rep["layers_after"] == rep["layers_before"] and rep["images_added"] == 0


def test_sharpen_with_a_blur_trace_in_image_pixels(gimp_run: Path, e2e_daemon: Path) -> None:
    """The trace box typed in Options in image pixels is moved into the crop the plug-in sends; the layer holds the
    daemon's deconvolution of that crop, which takes the shake out of the selection."""
    rep = report(gimp_run, "blur_trace_in_image_pixels")
    assert rep["status"] == "success", rep
    assert rep["source_unchanged"]
    sel = np.frombuffer((gimp_run / "blur_trace_in_image_pixels.selection").read_bytes(), np.uint8).reshape(H, W)
    region = editor.job_region(editor.Rect(0, 0, W, H), editor.Rect(*bounding_box(sel)))
    s, t = region.sent, region.target
    x, y, w, h = LAMP_TRACE
    assert s.x > 0
    sharp, shaken = shaken_lamp_rgba()
    client = Client(autostart=False, timeout=300, path=e2e_daemon / "daemon.json")
    expected = client.enhance("sharpen", shaken[s.y:s.bottom, s.x:s.right].tobytes(),
                              ImageSpec(s.width, s.height, "u8", "RGBA", "srgb"),
                              params={"blur_trace": f"{x - s.x},{y - s.y},{w},{h}"},
                              mask=sel[s.y:s.bottom, s.x:s.right].tobytes())
    assert expected.info["blur"] == "trace"
    want = editor.crop_rows(expected.pixels, expected.spec.row_stride, 4, region.inner)
    got = (gimp_run / "blur_trace_in_image_pixels.layer").read_bytes()
    assert got == want, "the new layer's pixels differ from the daemon's result"
    layer = np.frombuffer(got, np.uint8).reshape(t.height, t.width, 4)[:, :, :3]
    inside = (slice(t.y + 12, t.bottom - 12), slice(t.x + 12, t.right - 12))  # the selection's core
    before, after = psnr_y(shaken[inside][:, :, :3], sharp[inside]), psnr_y(layer[12:-12, 12:-12], sharp[inside])
    assert after > before + 3.0, f"{before:.2f} dB shaken, {after:.2f} dB after"


def test_sharpen_with_blur_motion_from_options(gimp_run: Path, e2e_daemon: Path) -> None:
    """`blur=motion` in Options reaches the daemon, which estimates the shake of the whole layer; the new layer
    holds the daemon's result for that request and is sharper than the shaken picture (this 120 x 90 px picture
    with its S-shaped shake: +0.46 dB, a quarter of the deconvolution mixed in)."""
    rep = report(gimp_run, "sharpen_blur_motion")
    assert rep["status"] == "success", rep
    assert rep["source_unchanged"]
    sharp, shaken = shaken_lamp_rgba()
    client = Client(autostart=False, timeout=300, path=e2e_daemon / "daemon.json")
    expected = client.enhance("sharpen", shaken.tobytes(), ImageSpec(W, H, "u8", "RGBA", "srgb"),
                              params={"blur": "motion"})
    assert expected.info["blur"] == "motion" and expected.info["shake"]["kernel_extent"] > 0
    got = (gimp_run / "sharpen_blur_motion.layer").read_bytes()
    assert got == expected.pixels, "the new layer's pixels differ from the daemon's result"
    layer = np.frombuffer(got, np.uint8).reshape(H, W, 4)[:, :, :3]
    inside = (slice(12, H - 12), slice(12, W - 12))
    before, after = psnr_y(shaken[inside][:, :, :3], sharp[inside]), psnr_y(layer[inside], sharp[inside])
    print(f"GIMP, --blur motion: {before:.2f} dB shaken, {after:.2f} dB after, {expected.info['shake']}")
    assert after > before + 0.3, f"{before:.2f} dB shaken, {after:.2f} dB after"  # measured +0.46


def test_unreachable_daemon_leaves_the_image_alone(chroot, workdir: Path, gimp_home: Path) -> None:
    empty = workdir / "gimp-run-empty"
    empty.mkdir(mode=0o700)
    case = {"name": "unreachable", "precision": "u8-non-linear", "task": "denoise", "selection": SELECTION,
            "args": {}}
    out = gimp_batch(chroot, workdir, gimp_home, [case], empty, "unreachable")
    rep = report(out, "unreachable")
    assert rep["status"] != "success"
    message = rep.get("error", "") + rep.get("pdb_error", "")
    assert "/bin/false serve --detach" in message, message
    assert rep["source_unchanged"] and rep["layers_after"] == rep["layers_before"]


def test_review_layer_hidden_above_the_result(gimp_run: Path, e2e_daemon: Path) -> None:
    rep = report(gimp_run, "review_layer")
    assert rep["status"] == "success", rep
    layer = rep["layer"]
    assert rep["layers_after"] == ["Retouch review", layer["name"], *rep["layers_before"]]
    review = rep["review"]
    assert review["visible"] is False and review["has_mask"]
    assert review["offsets"] + review["size"] == layer["rect"]
    sel = np.frombuffer((gimp_run / "review_layer.selection").read_bytes(), np.uint8).reshape(H, W)
    region = editor.job_region(editor.Rect(0, 0, W, H), editor.Rect(*bounding_box(sel)))
    s = region.sent
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    src = photo(W, H, "u8", "RGBA", "srgb")
    expected = client.enhance("denoise", src[s.y:s.bottom, s.x:s.right].tobytes(),
                              ImageSpec(s.width, s.height, "u8", "RGBA", "srgb"),
                              params={"noise_level": 10, "review": True},
                              mask=sel[s.y:s.bottom, s.x:s.right].tobytes())
    want = editor.crop_rows(expected.review, s.width, 1, region.inner)
    got = np.frombuffer((gimp_run / "review_layer.review").read_bytes(), np.uint8).reshape(-1, 4)
    assert got[:, 3].tobytes() == want and (got[:, 0] == 255).all()


def test_face_flag_becomes_a_named_path_around_the_face(gimp_run: Path, e2e_daemon: Path) -> None:
    """The daemon flags the astronaut's face (lighter touch); the plug-in adds one rectangular path named with the
    flag around exactly the box the daemon reported, in the image that holds the result."""
    rep = report(gimp_run, "face_flag_path")
    assert rep["status"] == "success", rep
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    expected = client.enhance("denoise", astronaut_rgba(ASTRONAUT).tobytes(),
                              ImageSpec(ASTRONAUT, ASTRONAUT, "u8", "RGBA", "srgb"), params={"noise_level": 5})
    faces = [f for f in expected.info.get("flags", []) if f["kind"] == "face"]
    assert len(faces) == 1, expected.info.get("flags")
    x0, y0, x1, y1 = faces[0]["box"]
    assert 70 <= x0 < x1 <= 155 and 10 <= y0 < y1 <= 110, faces[0]  # around her face, not elsewhere
    paths = rep["paths"]
    assert [p["name"] for p in paths] == ["Retouch flag: face: strength 0.5"], paths
    assert paths[0]["box"] == [x0, y0, x1, y1] and paths[0]["visible"] and paths[0]["strokes"] == 1


def test_text_flag_becomes_a_named_path_in_the_new_image(gimp_run: Path, e2e_daemon: Path) -> None:
    """Upscale x4 with the text guard on (`text_guard=true` in the options) of a sign whose reading the upscaler
    changes: the new image holding the result gets one rectangular path per text flag, named with the daemon's own
    words, around exactly the box the daemon reported."""
    rep = report(gimp_run, "text_flag_path")
    assert rep["status"] == "success", rep
    assert rep["source_unchanged"] and rep["images_added"] == 1 and not rep["layer"]["same_image"]
    sign = small_sign()
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    expected = client.enhance("upscale", sign.tobytes(), ImageSpec(sign.shape[1], sign.shape[0], "u8", "RGBA", "srgb"),
                              params={"scale": 4, "text_guard": True})
    assert (gimp_run / "text_flag_path.layer").read_bytes() == expected.pixels
    texts = [f for f in expected.info.get("flags", []) if f["kind"] == "text"]
    assert sign_flag_readings(texts) == [("88", "8B")], expected.info.get("flags")
    paths = [p for p in rep["paths"] if p["name"].startswith("Retouch flag: text")]
    assert [(p["name"], p["box"], p["visible"], p["strokes"]) for p in paths] == \
        [(f"Retouch flag: {f['label']}", f["box"], True, 1) for f in texts], rep["paths"]


def test_face_procedure_restores_the_face_in_a_new_layer(gimp_run: Path, e2e_daemon: Path) -> None:
    """Filters > Enhance > Retouch AI > Faces on the astronaut: the new layer holds exactly what the daemon's face
    task gives at its own face strength (1), the source is unchanged, and the restored face is one named path."""
    rep = report(gimp_run, "menu_face_procedure")
    assert rep["status"] == "success", rep
    assert rep["source_unchanged"] and rep["layer"]["name"].startswith("Retouch face")
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    source = astronaut_rgba(ASTRONAUT)
    expected = client.enhance("face", source.tobytes(), ImageSpec(ASTRONAUT, ASTRONAUT, "u8", "RGBA", "srgb"),
                              params={"face_strength": 1.0})
    assert (gimp_run / "menu_face_procedure.layer").read_bytes() == expected.pixels
    assert expected.pixels != source.tobytes()  # the face did change
    (face,) = [f for f in expected.info["flags"] if f["kind"] == "face"]
    paths = rep["paths"]
    assert [p["name"] for p in paths] == ["Retouch flag: face restored by retouch-sharpen"], paths
    assert paths[0]["box"] == face["box"]
