"""The Krita plugin in the real Krita 5.2.9 (kritarunner, offscreen), against a real daemon.

The plugin is installed from the zip packaging/ builds, with the pyzmq that zip carries (the chroot has none).
Each case makes a document in one colour depth, sets a known picture and a feathered selection, runs the plugin's
own `prepare → execute → apply` path (what `run()` and the docker's Run button do), then the host checks the
document: new layer above the source with the daemon's exact pixels, a transparency mask equal to the selection,
the source unchanged byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from daemon_process import start_daemon, stop_daemon
from pictures import LAMP_TRACE, close_to_scaled, photo, shaken_lamp_photo
from retouch import editor
from retouch.client import Client
from retouch.protocol import ImageSpec
from retouch.quality import psnr_y

HERE = Path(__file__).resolve().parent
W, H = 120, 90


# Krita's pixelData: U8/U16 BGRA, F16/F32 RGBA; 16-bit and float documents default to a linear profile
LAYOUTS = {"U8": ("u8", "BGRA", "srgb"), "U16": ("u16", "BGRA", "linear"), "F16": ("f16", "RGBA", "linear"),
           "F32": ("f32", "RGBA", "linear")}


def picture(depth: str) -> np.ndarray:
    """A held-out photo crop in the layout Krita's pixelData uses for this depth."""
    return photo(W, H, *LAYOUTS[depth])


def feathered_selection() -> np.ndarray:
    """An ellipse that reaches near the right edge, with a 6 px soft border (8-bit selection values)."""
    yy, xx = np.mgrid[0:H, 0:W]
    r = np.sqrt(((xx - 80) / 34.0) ** 2 + ((yy - 45) / 28.0) ** 2)
    return np.clip((1.0 - r) * 28 * 255 / 6, 0, 255).astype(np.uint8)


CASES: list[dict[str, Any]] = [
    {"name": "u8_denoise_selection", "depth": "U8", "task": "denoise", "params": {"noise_level": 10},
     "selection": True},
    {"name": "u16_denoise_selection", "depth": "U16", "task": "denoise", "params": {"noise_level": 10,
                                                                                  "strength": 0.7},
     "selection": True},
    {"name": "f16_sharpen_layer", "depth": "F16", "task": "sharpen", "params": {}},
    {"name": "f32_tone_selection", "depth": "F32", "task": "tone", "params": {}, "selection": True},
    {"name": "u8_upscale_new_document", "depth": "U8", "task": "upscale", "params": {"scale": 2},
     "selection": True},
    {"name": "u16_upscale_resize_document", "depth": "U16", "task": "upscale",
     "params": {"scale": 2, "resize_document": True}},
    {"name": "u16_restore_selection", "depth": "U16", "task": "restore", "params": {"grow": 1}, "selection": True},
    {"name": "u8_colorize_layer", "depth": "U8", "task": "colorize", "params": {"vividness": 1.2}},
    {"name": "u8_group_layer", "depth": "U8", "task": "denoise", "params": {"noise_level": 5},
     "layer_kind": "grouplayer"},
    {"name": "cmyk_refused", "depth": "U8", "color_model": "CMYKA", "task": "denoise", "params": {}},
    {"name": "gray_refused", "depth": "U8", "color_model": "GRAYA", "task": "denoise", "params": {}},
    {"name": "typo_refused", "depth": "U8", "task": "denoise", "params": {"noise_levl": 5}},
    # a blur trace is given in document pixels; this one lies left of the selection plus its context
    {"name": "blur_trace_outside_refused", "depth": "U8", "task": "sharpen", "params": {"blur_trace": "0,0,10,10"},
     "selection": True},
    {"name": "u8_sharpen_blur_trace", "depth": "U8", "task": "sharpen", "selection": True,
     "params": {"blur_trace": ",".join(map(str, LAMP_TRACE))},
     "pixels": np.dstack([shaken_lamp_photo(W, H)[1][:, :, ::-1], np.full((H, W), 255, np.uint8)]).tobytes()},
    {"name": "u8_sharpen_blur_motion", "depth": "U8", "task": "sharpen", "params": {"blur": "motion"},
     "pixels": np.dstack([shaken_lamp_photo(W, H)[1][:, :, ::-1], np.full((H, W), 255, np.uint8)]).tobytes()},
]


@pytest.fixture(scope="module")
def pykrita(workdir: Path, krita_bundle: Path) -> Path:
    """The zip unpacked into a pykrita folder, as Tools > Scripts > Import Python Plugin from File does."""
    folder = workdir / "pykrita"
    with zipfile.ZipFile(krita_bundle) as zf:
        zf.extractall(folder)
    (workdir / "krita_driver.py").write_bytes((HERE / "krita_driver.py").read_bytes())
    return folder


def kritarunner(chroot, workdir: Path, pykrita: Path, cases: list[dict], runtime: Path, tag: str) -> tuple[Path, dict]:
    """Write the cases' pictures and plan, run them all in one kritarunner, return (out dir, summary)."""
    inputs = workdir / f"inputs-{tag}"
    inputs.mkdir()
    out = workdir / f"out-{tag}"
    plan_cases = []
    for case in cases:
        c = dict(case)
        c.setdefault("width", W)
        c.setdefault("height", H)
        if case.get("color_model") in (None, "RGBA"):
            src = inputs / f"{case['name']}.src"
            pixels = case.get("pixels")
            src.write_bytes(pixels if pixels is not None else picture(case["depth"]).tobytes())
            c["source"] = chroot.inside(src)
        c.pop("pixels", None)
        if case.get("selection"):
            sel = inputs / f"{case['name']}.sel"
            sel.write_bytes(feathered_selection().tobytes())
            c["selection"] = chroot.inside(sel)
        plan_cases.append(c)
    plan = workdir / f"plan-{tag}.json"
    plan.write_text(json.dumps({"out": chroot.inside(out), "cases": plan_cases}))
    env = {"QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": f"{chroot.inside(pykrita)}:{chroot.inside(workdir)}",
           "RETOUCH_RUNTIME_DIR": chroot.inside(runtime), "RETOUCH_E2E_PLAN": chroot.inside(plan),
           "RETOUCH_DAEMON_COMMAND": "/bin/false"}
    proc = chroot.run(["kritarunner", "-s", "krita_driver", "-f", "main"], env, timeout=600)
    summary_file = out / "summary.json"
    assert summary_file.exists(), f"kritarunner wrote no summary:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return out, json.loads(summary_file.read_text())


@pytest.fixture(scope="module")
def krita_run(chroot, workdir: Path, pykrita: Path, e2e_daemon: Path) -> tuple[Path, dict]:
    return kritarunner(chroot, workdir, pykrita, CASES, e2e_daemon, "main")


def report(out: Path, name: str) -> dict:
    data = json.loads((out / f"{name}.json").read_text())
    assert "crash" not in data, data["crash"]
    return data


def test_plugin_loads_in_krita_with_bundled_pyzmq(krita_run) -> None:
    _, summary = krita_run
    assert "import_error" not in summary, summary["import_error"]
    assert summary["krita"].startswith("5.2"), summary
    assert "pyzmq" in summary["zmq_from"] and "abi3-linux_x86_64" in summary["zmq_from"], summary


@pytest.mark.parametrize("case", [c for c in CASES if "refused" not in c["name"] and c.get("layer_kind") is None
                                  and "pixels" not in c],
                         ids=lambda c: c["name"])
def test_result_layer(case: dict, krita_run, e2e_daemon: Path) -> None:
    out, _ = krita_run
    rep = report(out, case["name"])
    assert "error" not in rep, rep["error"]
    resized = bool(case["params"].get("resize_document"))
    assert rep["source_unchanged"] or resized, "the source layer changed"
    depth, scale = case["depth"], int(case["params"].get("scale", 1))
    layer = rep["layer"]
    assert layer["type"] == "paintlayer" and layer["depth"] == depth
    assert layer["name"].startswith(f"Retouch {case['task']}")
    assert layer["name"].endswith("(retouch-upscale-x2)") if case["task"] == "upscale" else True

    # what was sent: the source over the padded selection box, and the selection as the mask
    sel = feathered_selection() if case.get("selection") else None
    src = picture(depth)
    canvas = editor.Rect(0, 0, W, H)
    bbox = None
    if sel is not None:
        ys, xs = np.nonzero(sel)
        bbox = editor.Rect(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    region = editor.job_region(canvas, bbox)
    assert rep["sent"] == list(vars(region.sent).values()) and rep["target"] == list(vars(region.target).values())
    s = region.sent
    sent = (out / rep["request_pixels"]).read_bytes()
    assert sent == src[s.y:s.bottom, s.x:s.right].tobytes()
    if sel is not None:
        assert (out / rep["request_mask"]).read_bytes() == sel[s.y:s.bottom, s.x:s.right].tobytes()

    # the layer holds exactly the daemon's result for that request, aligned on the target box
    spec = ImageSpec.from_header(rep["spec"])
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    mask = (out / rep["request_mask"]).read_bytes() if sel is not None else None
    params = {k: v for k, v in case["params"].items() if k != "resize_document"}
    expected = client.enhance(case["task"], sent, spec, params=params, mask=mask)
    inner = region.inner.scaled(scale)
    want = editor.crop_rows(expected.pixels, expected.spec.row_stride, spec.channels * spec.itemsize, inner)
    got = (out / rep["layer_pixels"]).read_bytes()
    assert len(got) == len(want)
    assert got == want, "the new layer's pixels differ from the daemon's result"
    assert layer["rect"][2:] == [region.target.width * scale, region.target.height * scale]

    if scale == 1 or resized:
        assert rep["documents_added"] == 0
        before = rep["layers_before"]
        above = before.index("Source") + 1
        assert rep["layers_after"] == [*before[:above], layer["name"], *before[above:]], "not directly above"
        assert layer["rect"][:2] == [region.target.x * scale, region.target.y * scale]
        if scale > 1:
            assert rep["document_size"] == [W * scale, H * scale]
    else:
        assert rep["documents_added"] == 1
        assert rep["new_document"][:3] == [region.target.width * scale, region.target.height * scale, depth]
        assert rep["document_size"] == [W, H], "the source document was resized"

    if sel is None:
        assert not any(t == "transparencymask" for _, t in layer["children"])
        return
    assert [t for _, t in layer["children"]] == ["transparencymask"]
    m = np.frombuffer((out / rep["mask_pixels"]).read_bytes(), np.uint8)
    t = region.target
    sel_t = sel[t.y:t.bottom, t.x:t.right]
    if scale == 1:
        assert m.tobytes() == sel_t.tobytes(), "the transparency mask differs from the selection"
    else:
        close_to_scaled(m, sel_t, scale)


def test_sharpen_with_a_blur_trace_in_document_pixels(krita_run, e2e_daemon: Path) -> None:
    """The trace box typed in document pixels reaches the daemon moved into the sent crop; the layer holds the
    daemon's deconvolution of that crop, which takes the shake out of the selection (PSNR against the sharp
    picture far above the shaken one's)."""
    out, _ = krita_run
    rep = report(out, "u8_sharpen_blur_trace")
    assert "error" not in rep, rep["error"]
    assert rep["source_unchanged"]
    s = editor.Rect(*rep["sent"])
    x, y, w, h = LAMP_TRACE
    assert s.x > 0 and rep["params"]["blur_trace"] == f"{x - s.x},{y - s.y},{w},{h}"
    client = Client(autostart=False, timeout=300, path=e2e_daemon / "daemon.json")
    sent = (out / rep["request_pixels"]).read_bytes()
    expected = client.enhance("sharpen", sent, ImageSpec.from_header(rep["spec"]), params=rep["params"],
                              mask=(out / rep["request_mask"]).read_bytes())
    assert expected.info["blur"] == "trace" and expected.info["blur_trace"] == [x - s.x, y - s.y, w, h]
    t = editor.Rect(*rep["target"])
    inner = editor.Rect(t.x - s.x, t.y - s.y, t.width, t.height)
    want = editor.crop_rows(expected.pixels, expected.spec.row_stride, 4, inner)
    got = (out / rep["layer_pixels"]).read_bytes()
    assert got == want, "the new layer's pixels differ from the daemon's result"
    sharp, shaken = shaken_lamp_photo(W, H)
    layer = np.frombuffer(got, np.uint8).reshape(t.height, t.width, 4)[:, :, 2::-1]
    inside = (slice(t.y + 12, t.bottom - 12), slice(t.x + 12, t.right - 12))  # the selection's core
    before, after = psnr_y(shaken[inside], sharp[inside]), psnr_y(layer[12:-12, 12:-12], sharp[inside])
    assert after > before + 3.0, f"{before:.2f} dB shaken, {after:.2f} dB after"


def test_sharpen_with_blur_motion(krita_run, e2e_daemon: Path) -> None:
    """blur=motion reaches the daemon, which estimates the shake of the whole layer; the new layer holds the
    daemon's result for that request and is sharper than the shaken picture (this 120 x 90 px picture with its
    S-shaped shake: +0.46 dB, a quarter of the deconvolution mixed in)."""
    out, _ = krita_run
    rep = report(out, "u8_sharpen_blur_motion")
    assert "error" not in rep, rep["error"]
    assert rep["source_unchanged"] and rep["params"]["blur"] == "motion"
    client = Client(autostart=False, timeout=300, path=e2e_daemon / "daemon.json")
    sent = (out / rep["request_pixels"]).read_bytes()
    expected = client.enhance("sharpen", sent, ImageSpec.from_header(rep["spec"]), params=rep["params"])
    assert expected.info["blur"] == "motion" and expected.info["shake"]["kernel_extent"] > 0
    got = (out / rep["layer_pixels"]).read_bytes()
    assert rep["sent"] == [0, 0, W, H] and got == expected.pixels, "the new layer differs from the daemon's result"
    sharp, shaken = shaken_lamp_photo(W, H)
    layer = np.frombuffer(got, np.uint8).reshape(H, W, 4)[:, :, 2::-1]
    inside = (slice(12, H - 12), slice(12, W - 12))
    before, after = psnr_y(shaken[inside], sharp[inside]), psnr_y(layer[inside], sharp[inside])
    print(f"Krita, --blur motion: {before:.2f} dB shaken, {after:.2f} dB after, {expected.info['shake']}")
    assert after > before + 0.3, f"{before:.2f} dB shaken, {after:.2f} dB after"  # measured +0.46


def test_group_layer_uses_its_projection(krita_run) -> None:
    out, _ = krita_run
    rep = report(out, "u8_group_layer")
    assert "error" not in rep, rep["error"]
    assert any("projection" in n for n in rep["notes"]), rep["notes"]
    assert rep["source_unchanged"]


@pytest.mark.parametrize("name,words", [("cmyk_refused", ["RGB", "CMYKA", "nothing was changed"]),
                                        ("gray_refused", ["RGB", "GRAYA"]),
                                        ("typo_refused", ["noise_levl", "noise_level"]),
                                        ("blur_trace_outside_refused", ["blur_trace box 0,0,10,10",
                                                                        "not inside the area sent"])])
def test_bad_input_is_refused_with_a_reason(krita_run, name: str, words: list[str]) -> None:
    out, _ = krita_run
    rep = report(out, name)
    assert "error" in rep, "the plugin accepted what it should refuse"
    for w in words:
        assert w in rep["error"], rep["error"]
    assert rep["source_unchanged"] and rep["layers_after"] == rep["layers_before"]
    assert rep["documents_added"] == 0


def test_no_daemon_and_none_can_start_leaves_the_document_alone(chroot, workdir: Path, pykrita: Path) -> None:
    empty = workdir / "run-empty"
    empty.mkdir(mode=0o700)
    case = {"name": "unreachable", "depth": "U8", "task": "denoise", "params": {}, "selection": True}
    out, _ = kritarunner(chroot, workdir, pykrita, [case], empty, "unreachable")
    rep = report(out, "unreachable")
    assert "DaemonUnavailable" in rep["error"] and "/bin/false serve --detach" in rep["error"], rep["error"]
    assert rep["source_unchanged"] and rep["layers_after"] == rep["layers_before"]


def test_daemon_dying_mid_job_is_reported_and_the_document_is_untouched(chroot, workdir: Path, pykrita: Path) -> None:
    runtime = workdir / "run-dies"
    runtime.mkdir(mode=0o700)
    proc = start_daemon(runtime, workdir / "models")
    big = np.random.default_rng(1).integers(0, 256, (700, 700, 4), dtype=np.uint8)
    case = {"name": "daemon_dies", "depth": "U8", "task": "upscale", "width": 700, "height": 700,
            "params": {"scale": 4, "ensemble": True}, "pixels": big.tobytes()}
    box: dict = {}
    runner = threading.Thread(target=lambda: box.update(r=kritarunner(chroot, workdir, pykrita, [case], runtime,
                                                                      "dies")))
    runner.start()
    try:
        client = Client(autostart=False, timeout=10, path=runtime / "daemon.json")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (client.status().get("running") or {}).get("job_id"):
            time.sleep(0.2)
        assert (client.status().get("running") or {}).get("job_id"), "the plugin's job never started"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        runner.join(300)
        stop_daemon(proc)
    out, _ = box["r"]
    rep = report(out, "daemon_dies")
    assert "exited while running the job" in rep["error"], rep["error"]
    assert rep["source_unchanged"] and rep["layers_after"] == rep["layers_before"] and rep["documents_added"] == 0


def test_preview_runs_on_the_centre_crop_without_a_selection(chroot, workdir: Path, pykrita: Path,
                                                             e2e_daemon: Path) -> None:
    """No view in kritarunner, so Preview falls back to a 512 px centre crop; the layer is marked [preview]."""
    pixels = np.random.default_rng(3).integers(0, 256, (600, 700, 4), dtype=np.uint8)
    pixels[:, :, 3] = 255
    case = {"name": "preview", "depth": "U8", "task": "tone", "width": 700, "height": 600,
            "params": {"preview": True}, "pixels": pixels.tobytes()}
    out, _ = kritarunner(chroot, workdir, pykrita, [case], e2e_daemon, "preview")
    rep = report(out, "preview")
    assert "error" not in rep, rep["error"]
    assert rep["target"] == [94, 44, 512, 512] and rep["layer"]["rect"] == [94, 44, 512, 512]
    assert rep["layer"]["name"].endswith("[preview]")
    assert rep["source_unchanged"]


def test_review_layer_is_hidden_in_one_group_with_the_result(chroot, workdir: Path, pykrita: Path,
                                                             e2e_daemon: Path) -> None:
    case = {"name": "review", "depth": "U8", "task": "denoise", "selection": True,
            "params": {"noise_level": 10, "review": True}}
    out, _ = kritarunner(chroot, workdir, pykrita, [case], e2e_daemon, "review")
    rep = report(out, "review")
    assert "error" not in rep, rep["error"]
    parent = rep["parent"]
    assert parent["type"] == "grouplayer" and parent["name"] == rep["layer"]["name"]
    assert [c[:2] for c in parent["children"]] == [[rep["layer"]["name"], "paintlayer"],
                                                   ["Retouch review", "paintlayer"]]
    assert parent["children"][1][2] is False, "the review layer must start hidden"
    before = rep["layers_before"]
    above = before.index("Source") + 1
    assert rep["layers_after"] == [*before[:above], parent["name"], *before[above:]]
    # its alpha is the daemon's invention map for the request the plugin sent
    spec = ImageSpec.from_header(rep["spec"])
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    expected = client.enhance("denoise", (out / rep["request_pixels"]).read_bytes(), spec,
                              params={"noise_level": 10, "review": True},
                              mask=(out / rep["request_mask"]).read_bytes())
    t = rep["target"]
    s = rep["sent"]
    inner = editor.Rect(t[0] - s[0], t[1] - s[1], t[2], t[3])
    want = editor.crop_rows(expected.review, spec.width, 1, inner)
    got = np.frombuffer((out / rep["review_pixels"]).read_bytes(), np.uint8).reshape(-1, 4)
    assert got[:, 3].tobytes() == want and (got[:, 2] == 255).all()


def test_face_task_on_a_portrait(chroot, workdir: Path, pykrita: Path, e2e_daemon: Path) -> None:
    """The face task from Krita on scikit-image's astronaut: a new layer above the source holding exactly the
    daemon's result for what the plugin sent (the face restored, the rest as it was), the source unchanged."""
    import skimage.data
    from PIL import Image

    side = 256
    rgb = np.asarray(Image.fromarray(skimage.data.astronaut()).resize((side, side), Image.Resampling.LANCZOS))
    bgra = np.concatenate([rgb[:, :, ::-1], np.full((side, side, 1), 255, np.uint8)], axis=2)
    case = {"name": "face", "depth": "U8", "task": "face", "width": side, "height": side, "params": {},
            "pixels": np.ascontiguousarray(bgra).tobytes()}
    out, _ = kritarunner(chroot, workdir, pykrita, [case], e2e_daemon, "face")
    rep = report(out, "face")
    assert "error" not in rep, rep["error"]
    assert rep["source_unchanged"] and rep["layer"]["name"].startswith("Retouch face")
    before = rep["layers_before"]
    above = before.index("Source") + 1
    assert rep["layers_after"] == [*before[:above], rep["layer"]["name"], *before[above:]]
    sent = (out / rep["request_pixels"]).read_bytes()
    assert sent == bgra.tobytes()
    client = Client(autostart=False, timeout=120, path=e2e_daemon / "daemon.json")
    expected = client.enhance("face", sent, ImageSpec.from_header(rep["spec"]), params={})
    assert (out / rep["layer_pixels"]).read_bytes() == expected.pixels
    assert expected.pixels != sent and len(expected.info["faces"]) == 1  # her face, restored
