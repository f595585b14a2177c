"""The real `retouch` command line, run as a subprocess against a real daemon that it starts on demand.

Most tests share one daemon (in a runtime dir private to this module: starting a daemon and loading a model is the
slow part); the tests that stop a daemon or depend on where it was started get one of their own. Every daemon is
stopped at teardown. The builtin models are being retrained: nothing here judges image quality.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx_export import save_onnx
from PIL import ImageCms
from retouch import connection
from retouch.client import Client
from retouch.imageio import read_image, write_image
from retouch.protocol import ImageSpec

BUILTIN_NAMES = ("retouch-upscale-x2", "retouch-upscale-x4")
CLI_TIMEOUT = 180


# --------------------------------------------------------------------------------------------------------------------
# daemon lifetime


def _stop_daemon_in(runtime: Path, models: Path | None = None) -> None:
    """`retouch stop` for the daemon of `runtime`; kill it by its pid if it is still there afterwards."""
    env = dict(os.environ, RETOUCH_RUNTIME_DIR=str(runtime))
    if models is not None:
        env["RETOUCH_MODELS_DIR"] = str(models)
    info = connection.read_connection_file(runtime / connection.FILE_NAME)
    subprocess.run([sys.executable, "-m", "retouch", "stop"], env=env, capture_output=True, timeout=60, check=False)
    if info is None:
        return
    deadline = time.monotonic() + 10
    while connection.pid_alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not connection.pid_alive(info["pid"]):
            return
        try:
            os.kill(info["pid"], sig)
        except ProcessLookupError:
            return
        time.sleep(1)


@pytest.fixture(scope="module")
def module_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Runtime dir and models dir of the daemon this module shares; `retouch stop` at the end of the module."""
    runtime = tmp_path_factory.mktemp("cli-runtime")
    models = tmp_path_factory.mktemp("cli-models")
    yield runtime, models
    _stop_daemon_in(runtime, models)


@pytest.fixture(autouse=True)
def cli_env(private_dirs: Path, module_dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point every CLI call of a test at the module's daemon (os.environ is what the subprocesses inherit)."""
    runtime, models = module_dirs
    monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("RETOUCH_MODELS_DIR", str(models))
    yield


@pytest.fixture
def own_daemon(private_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime dir of this test alone (its daemon, if the test starts one, is stopped at teardown)."""
    monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(private_dirs))
    yield private_dirs
    _stop_daemon_in(private_dirs)


# --------------------------------------------------------------------------------------------------------------------
# helpers


def retouch(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "retouch", *(str(a) for a in args)],
        env=dict(os.environ),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line on stdout, got: {proc.stdout!r}"
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    return data


def one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, exactly one line on stderr, no traceback, naming everything in `needles`."""
    assert proc.returncode != 0, f"expected a failure, got exit 0\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {proc.stderr!r}"
    line = lines[0]
    assert line.startswith("retouch: error: "), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


def smooth_rgb(h: int = 48, w: int = 64, dtype: type = np.uint8) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    f = np.stack([0.15 + 0.7 * x / w, 0.2 + 0.6 * y / h, 0.5 + 0.3 * np.sin(x / 9) * np.cos(y / 7)], axis=2)
    if dtype == np.float32:
        return f.astype(np.float32)
    return np.rint(f * np.iinfo(dtype).max).astype(dtype)


@pytest.fixture(scope="module")
def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.fixture
def png_in(tmp_path: Path) -> Path:
    path = tmp_path / "in.png"
    write_image(path, smooth_rgb())
    return path


def export_onnx(path: Path, out_channels: int = 3, scale: int = 2) -> None:
    """A tiny dynamic-size ONNX upscaler: conv + pixel shuffle."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, out_channels * scale * scale, 3, padding=1), torch.nn.PixelShuffle(scale)
    ).eval()
    save_onnx(net, path)


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --------------------------------------------------------------------------------------------------------------------
# enhance: formats and sizes


def test_enhance_png_json(tmp_path: Path, png_in: Path) -> None:
    out = tmp_path / "out.png"
    proc = ok(retouch("enhance", png_in, "-o", out, "--task", "upscale", "--scale", "2", "--json"))
    info = one_json(proc)
    for key in ("task", "model", "device", "seconds", "input_size", "output_size"):
        assert key in info, key
    assert info["task"] == "upscale"
    assert info["model"] == "retouch-upscale-x2"
    assert info["device"] == "cpu" or info["device"].startswith("cuda")
    assert isinstance(info["seconds"], (int, float)) and info["seconds"] >= 0
    assert info["input_size"] == [64, 48]
    assert info["output_size"] == [128, 96]
    assert info["output"] == str(out) and info["input"] == str(png_in)
    img = read_image(out)
    assert img.format == "PNG"
    assert img.pixels.shape == (96, 128, 3) and img.pixels.dtype == np.uint8
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_enhance_plain_summary_line(tmp_path: Path, png_in: Path) -> None:
    out = tmp_path / "out.png"
    proc = ok(retouch("enhance", png_in, "-o", out))
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]
    assert "128x96" in proc.stdout and "retouch-upscale-x2" in proc.stdout
    assert ok(retouch("enhance", png_in, "-o", tmp_path / "quiet.png", "-q")).stdout == ""
    assert read_image(tmp_path / "quiet.png").pixels.shape == (96, 128, 3)


def test_16bit_rgba_tiff_keeps_depth_alpha_and_icc(tmp_path: Path, srgb_icc: bytes) -> None:
    h, w = 40, 56
    rgba = np.zeros((h, w, 4), np.uint16)
    rgba[:, :, :3] = smooth_rgb(h, w, np.uint16)
    rgba[:, w // 2 :, 3] = 65535  # left half fully transparent, right half opaque
    src, dst = tmp_path / "in16.tif", tmp_path / "out16.tif"
    write_image(src, rgba, srgb_icc)
    assert read_image(src).icc_profile == srgb_icc
    info = one_json(ok(retouch("enhance", src, "-o", dst, "--json")))
    assert info["output_size"] == [2 * w, 2 * h]
    out = read_image(dst)
    assert out.format == "TIFF"
    assert out.pixels.dtype == np.uint16
    assert out.pixels.shape == (2 * h, 2 * w, 4)
    assert out.icc_profile == srgb_icc
    alpha = out.pixels[:, :, 3]
    margin = 8  # the resized alpha may blend across the edge at x = w (output pixels)
    assert (alpha[:, : w - margin] == 0).all(), "a fully transparent region became visible"
    assert (alpha[:, w + margin :] == 65535).all(), "an opaque region became transparent"
    assert out.pixels[:, :, :3].max() > 255  # still 16-bit data, not 8-bit values in a 16-bit file


def test_float_tiff_stays_float(tmp_path: Path) -> None:
    src, dst = tmp_path / "f.tif", tmp_path / "f-out.tiff"
    write_image(src, smooth_rgb(32, 40, np.float32))
    ok(retouch("enhance", src, "-o", dst, "-q"))
    out = read_image(dst)
    assert out.pixels.dtype == np.float32 and out.pixels.shape == (64, 80, 3)


def test_jpeg_in_jpeg_out(tmp_path: Path, srgb_icc: bytes) -> None:
    src, dst = tmp_path / "photo.jpg", tmp_path / "photo-x2.jpeg"
    write_image(src, smooth_rgb(40, 56), srgb_icc)
    info = one_json(ok(retouch("enhance", src, "-o", dst, "--json")))
    assert info["output_size"] == [112, 80]
    out = read_image(dst)
    assert out.format == "JPEG"
    assert out.pixels.shape == (80, 112, 3) and out.pixels.dtype == np.uint8
    assert out.icc_profile == srgb_icc


@pytest.mark.parametrize(("channels", "color_type"), [(1, 0), (2, 4)])
def test_gray_png_stays_gray(tmp_path: Path, channels: int, color_type: int) -> None:
    gray = smooth_rgb(32, 48)[:, :, :1]
    if channels == 2:
        alpha = np.full_like(gray, 255)
        alpha[:, :16] = 0
        gray = np.concatenate([gray, alpha], axis=2)
    src, dst = tmp_path / "gray.png", tmp_path / "gray-x2.png"
    write_image(src, gray)
    ok(retouch("enhance", src, "-o", dst, "-q"))
    out = read_image(dst)
    assert out.pixels.shape == (64, 96, channels) and out.pixels.dtype == np.uint8
    data = dst.read_bytes()
    assert data[25] == color_type, f"PNG colour type {data[25]}, want {color_type} (gray{'+alpha' * (channels == 2)})"
    if channels == 2:
        assert (out.pixels[:, : 32 - 8, 1] == 0).all()
        assert (out.pixels[:, 32 + 8 :, 1] == 255).all()


def test_scale_4_quadruples(tmp_path: Path, png_in: Path) -> None:
    out = tmp_path / "x4.png"
    info = one_json(ok(retouch("enhance", png_in, "-o", out, "--scale", "4", "--json")))
    assert info["model"] == "retouch-upscale-x4"
    assert info["output_size"] == [256, 192]
    assert read_image(out).pixels.shape == (192, 256, 3)


def test_x4_model_asked_for_x2(tmp_path: Path, png_in: Path) -> None:
    out = tmp_path / "x4for2.png"
    info = one_json(ok(retouch("enhance", png_in, "-o", out, "--model", "retouch-upscale-x4", "--json")))
    assert info["model"] == "retouch-upscale-x4" and info["output_size"] == [128, 96]
    assert read_image(out).pixels.shape == (96, 128, 3)


def test_tiled_enhance_matches_shape(tmp_path: Path, png_in: Path) -> None:
    out = tmp_path / "tiled.png"
    info = one_json(ok(retouch("enhance", png_in, "-o", out, "--tile", "32", "--json")))
    assert info["tiles"] > 1
    assert read_image(out).pixels.shape == (96, 128, 3)


def test_onnx_model_by_path(tmp_path: Path, png_in: Path) -> None:
    model = tmp_path / "tiny-x2.onnx"
    export_onnx(model)
    out = tmp_path / "onnx.png"
    info = one_json(ok(retouch("enhance", png_in, "-o", out, "--model", model, "--json")))
    assert info["model"] == "tiny-x2" and info["device"].startswith("onnx:")
    assert read_image(out).pixels.shape == (96, 128, 3)


# --------------------------------------------------------------------------------------------------------------------
# models, status, stop


def test_models_json() -> None:
    data = one_json(ok(retouch("models", "--json")))
    by_name = {m["name"]: m for m in data["models"]}
    for name in BUILTIN_NAMES:
        assert name in by_name
        assert by_name[name]["builtin"] is True
        assert by_name[name]["task"] == "upscale"
        assert by_name[name]["scale"] == int(name[-1])
        assert Path(by_name[name]["path"]).is_file()


def test_models_lists_user_folder() -> None:
    folder = Path(os.environ["RETOUCH_MODELS_DIR"])
    long_name = "my-own-model-whose-name-is-longer-than-the-name-column"
    for name in ("my-own-model", long_name):
        (folder / f"{name}.pth").write_bytes(b"x")
    try:
        data = one_json(ok(retouch("models", "--json")))
        mine = [m for m in data["models"] if m["name"] == "my-own-model"]
        assert len(mine) == 1 and mine[0]["builtin"] is False
        text = ok(retouch("models")).stdout
        assert "my-own-model" in text and "retouch-upscale-x2" in text
        # the columns line up whatever the longest name and task ("detect-damage") are
        rows = text.splitlines()
        kinds = {re.search(r" (builtin|user) ", row).start() for row in rows}
        scales = {re.search(r" x\d ", row).start() for row in rows if " builtin " in row}
        assert len(kinds) == 1 and len(scales) == 1, text
        assert next(iter(kinds)) >= len(long_name)
        # and so do the checksums of `models verify`
        text = ok(retouch("models", "verify")).stdout
        sums = {re.search(r" [0-9a-f]{64}$", row).start() for row in text.splitlines()}
        assert len(sums) == 1 and long_name in text, text
    finally:
        for name in ("my-own-model", long_name):
            (folder / f"{name}.pth").unlink()


def test_status_and_stop(own_daemon: Path, tmp_path: Path, png_in: Path) -> None:
    # no daemon yet: status says so and does not start one
    proc = retouch("status", "--json")
    assert proc.returncode != 0
    assert one_json(proc) == {"running": False}
    assert connection.live_connection(own_daemon / connection.FILE_NAME) is None

    ok(retouch("enhance", png_in, "-o", tmp_path / "out.png", "-q"))  # starts the daemon
    status = one_json(ok(retouch("status", "--json")))
    assert status["running"] is True
    assert status["completed"] >= 1
    pid = status["pid"]
    assert connection.pid_alive(pid)
    assert any(Path(p).name == "retouch-upscale-x2.safetensors" for p in status["loaded_models"])
    text = ok(retouch("status")).stdout
    assert f"pid {pid}" in text

    proc = ok(retouch("stop"))
    assert "stopped" in proc.stderr
    deadline = time.monotonic() + 10
    while connection.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not connection.pid_alive(pid)
    proc = retouch("status", "--json")
    assert proc.returncode != 0
    assert one_json(proc) == {"running": False}
    proc = ok(retouch("stop"))  # stopping nothing is fine
    assert "no daemon" in proc.stderr


def test_status_json_tells_the_running_job(tmp_path: Path, png_in: Path) -> None:
    ok(retouch("models", "--json"))  # make sure the module's daemon runs
    client = Client(autostart=False, timeout=30)
    px = smooth_rgb(96, 96)
    jobs = [client.submit("upscale", px.tobytes(), ImageSpec(96, 96, "u8", "RGB"), tile=32) for _ in range(3)]
    try:
        deadline = time.monotonic() + 60
        while client.status()["running"] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        status = one_json(ok(retouch("status", "--json")))
        text = json.dumps(status)
        assert any(job.job_id in text for job in jobs), f"no word of the running job in {status}"
    finally:
        for job in jobs:
            job.cancel()
            job.close()


# --------------------------------------------------------------------------------------------------------------------
# batch


def test_batch_processes_all_then_skips_all(tmp_path: Path, srgb_icc: bytes) -> None:
    in_dir, out_dir = tmp_path / "IN", tmp_path / "OUT"
    in_dir.mkdir()
    write_image(in_dir / "a.png", smooth_rgb(32, 40))
    write_image(in_dir / "b.jpg", smooth_rgb(36, 32), srgb_icc)
    rgba = np.concatenate([smooth_rgb(32, 32, np.uint16), np.full((32, 32, 1), 65535, np.uint16)], axis=2)
    write_image(in_dir / "c.tif", rgba)
    (in_dir / "notes.txt").write_text("not an image")
    (in_dir / "sub").mkdir()

    proc = ok(retouch("batch", in_dir, "-o", out_dir, "--scale", "2"))
    assert "3 enhanced" in proc.stdout and "0 skipped" in proc.stdout and "0 failed" in proc.stdout
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.png", "b.jpg", "c.tif"]
    assert read_image(out_dir / "a.png").pixels.shape == (64, 80, 3)
    assert read_image(out_dir / "b.jpg").pixels.shape == (72, 64, 3)
    c = read_image(out_dir / "c.tif").pixels
    assert c.shape == (64, 64, 4) and c.dtype == np.uint16
    mtimes = {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()}
    contents = listing(out_dir)

    proc = ok(retouch("batch", in_dir, "-o", out_dir, "--scale", "2"))
    assert "0 enhanced" in proc.stdout and "3 skipped" in proc.stdout
    summary = one_json(ok(retouch("batch", in_dir, "-o", out_dir, "--scale", "2", "--json")))
    assert summary["done"] == 0 and summary["skipped"] == 3 and summary["failed"] == 0
    assert all(f.get("skipped") for f in summary["files"])
    assert {p.name: p.stat().st_mtime_ns for p in out_dir.iterdir()} == mtimes
    assert listing(out_dir) == contents


def test_batch_format_and_failures(tmp_path: Path) -> None:
    in_dir, out_dir = tmp_path / "IN", tmp_path / "OUT"
    in_dir.mkdir()
    write_image(in_dir / "good.png", smooth_rgb(32, 32))
    (in_dir / "broken.png").write_text("not a png")
    proc = retouch("batch", in_dir, "-o", out_dir, "--format", "tif", "--json")
    assert proc.returncode == 1
    summary = one_json(proc)
    assert summary["done"] == 1 and summary["failed"] == 1 and summary["skipped"] == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["good.tif"]
    assert read_image(out_dir / "good.tif").pixels.shape == (64, 64, 3)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.png" in lines[0] and "Traceback" not in proc.stderr


def test_batch_format_name_collision_is_not_a_silent_skip(tmp_path: Path) -> None:
    in_dir, out_dir = tmp_path / "IN", tmp_path / "OUT"
    in_dir.mkdir()
    write_image(in_dir / "photo.jpg", smooth_rgb(32, 32))
    write_image(in_dir / "photo.png", smooth_rgb(32, 40))
    proc = retouch("batch", in_dir, "-o", out_dir, "--format", "png", "--json")
    summary = one_json(proc)
    assert summary["skipped"] == 0, f"a fresh output folder, yet {summary['skipped']} input(s) skipped: {summary}"


def test_batch_missing_folder(tmp_path: Path) -> None:
    one_error_line(retouch("batch", tmp_path / "nope", "-o", tmp_path / "out"), "nope", "not a folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error_line(retouch("batch", empty, "-o", tmp_path / "out"), "empty", "no PNG")


# --------------------------------------------------------------------------------------------------------------------
# bad input: one clear line, no traceback


def test_missing_input(tmp_path: Path) -> None:
    one_error_line(retouch("enhance", tmp_path / "nothere.png", "-o", tmp_path / "o.png"), "nothere.png", "not found")


def test_text_file_named_png(tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("hello, I am text\n")
    one_error_line(retouch("enhance", fake, "-o", tmp_path / "o.png"), "fake.png", "not an image")


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--task", "nope"], ["unknown task", "nope", "upscale"]),
        (["--model", "nope"], ["unknown model", "nope", "retouch-upscale-x2"]),
        (["--scale", "3"], ["scale", "3", "2, 4"]),
        (["--tile", "8"], ["tile", "8"]),
    ],
    ids=["unknown-task", "unknown-model", "scale-3", "tile-8"],
)
def test_bad_job_options(tmp_path: Path, png_in: Path, extra: list[str], needles: list[str]) -> None:
    out = tmp_path / "o.png"
    one_error_line(retouch("enhance", png_in, "-o", out, *extra), *needles)
    assert not out.exists()


def test_bad_output_suffix(tmp_path: Path, png_in: Path) -> None:
    one_error_line(retouch("enhance", png_in, "-o", tmp_path / "o.bmp"), "o.bmp", ".bmp")
    one_error_line(retouch("enhance", png_in, "-o", tmp_path / "noext"), "noext")
    assert not (tmp_path / "o.bmp").exists()


def test_output_folder_missing(tmp_path: Path, png_in: Path) -> None:
    one_error_line(retouch("enhance", png_in, "-o", tmp_path / "nodir" / "o.png"), "nodir", "does not exist")
    assert not (tmp_path / "nodir").exists()


def test_alpha_to_jpeg_refused(tmp_path: Path) -> None:
    src = tmp_path / "rgba.png"
    write_image(src, np.concatenate([smooth_rgb(32, 32), np.full((32, 32, 1), 255, np.uint8)], axis=2))
    one_error_line(retouch("enhance", src, "-o", tmp_path / "o.jpg"), "o.jpg", "alpha")


def test_garbage_model_file(tmp_path: Path, png_in: Path) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(bytes(range(256)) * 8)
    one_error_line(retouch("enhance", png_in, "-o", tmp_path / "o.png", "--model", bad), "garbage.pth")


def test_model_with_wrong_output_channels(tmp_path: Path, png_in: Path) -> None:
    model = tmp_path / "one-channel-x2.onnx"
    export_onnx(model, out_channels=1)
    proc = retouch("enhance", png_in, "-o", tmp_path / "o.png", "--model", model)
    line = one_error_line(proc, "one-channel-x2")
    assert "frame" not in line


@pytest.mark.parametrize(
    "extra",
    [["--model", "nope"], ["--scale", "3"], ["--task", "nope"]],
    ids=["unknown-model", "scale-3", "unknown-task"],
)
def test_failed_job_leaves_existing_output_alone(tmp_path: Path, png_in: Path, extra: list[str]) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result.png"
    write_image(out, smooth_rgb(16, 16)[::-1])
    before = listing(out_dir)
    mtime = out.stat().st_mtime_ns
    one_error_line(retouch("enhance", png_in, "-o", out, *extra))
    assert listing(out_dir) == before  # same bytes, and no temporary file left beside it
    assert out.stat().st_mtime_ns == mtime


def test_failed_write_leaves_existing_output_alone(tmp_path: Path) -> None:
    src = tmp_path / "rgba.tif"
    write_image(src, np.concatenate([smooth_rgb(32, 32), np.full((32, 32, 1), 255, np.uint8)], axis=2))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result.jpg"
    write_image(out, smooth_rgb(16, 16))
    before = listing(out_dir)
    one_error_line(retouch("enhance", src, "-o", out), "result.jpg")
    assert listing(out_dir) == before


@pytest.mark.parametrize("spelling", ["same", "dotted", "absolute", "symlink"])
def test_output_equal_to_input_refused(tmp_path: Path, png_in: Path, spelling: str) -> None:
    before = png_in.read_bytes()
    (tmp_path / "sub").mkdir()
    if spelling == "same":
        out, cwd = Path("in.png"), tmp_path
        src = Path("in.png")
    elif spelling == "dotted":
        out, cwd = Path("sub/../in.png"), tmp_path
        src = Path("./in.png")
    elif spelling == "absolute":
        out, cwd, src = png_in, tmp_path / "sub", Path("../in.png")
    else:
        link = tmp_path / "sub" / "link.png"
        link.symlink_to(png_in)
        out, cwd, src = link, tmp_path, Path("in.png")
    one_error_line(retouch("enhance", src, "-o", out, cwd=cwd), "overwrite the input")
    assert png_in.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "sub"]


def test_relative_model_path_from_another_folder(tmp_path: Path, png_in: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ok(retouch("models", cwd=elsewhere))  # the daemon runs (it was started from some other folder)
    work = tmp_path / "work"
    (work / "models").mkdir(parents=True)
    export_onnx(work / "models" / "rel-x2.onnx")
    proc = retouch("enhance", png_in, "-o", work / "out.png", "--model", "models/rel-x2.onnx", cwd=work)
    ok(proc)
    assert read_image(work / "out.png").pixels.shape == (96, 128, 3)


def test_usage_errors_exit_2(tmp_path: Path, png_in: Path) -> None:
    assert retouch("enhance", png_in).returncode == 2  # -o is required
    assert retouch("enhance", png_in, "-o", tmp_path / "o.png", "--scale", "two").returncode == 2
    assert retouch("frobnicate").returncode == 2
    proc = ok(retouch("--version"))
    assert proc.stdout.startswith("retouch ")


@pytest.mark.parametrize("value", ["0", "-1", "lots"])
def test_serve_refuses_a_bad_vram_budget(value: str) -> None:
    proc = retouch("serve", "--vram-budget", value)
    assert proc.returncode == 2
    assert "argument --vram-budget" in proc.stderr and repr(value) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_face_flags_in_json_and_plain_output(tmp_path: Path) -> None:
    import skimage.data
    from PIL import Image

    portrait = tmp_path / "portrait.png"
    Image.fromarray(skimage.data.astronaut()).resize((256, 256)).save(portrait)
    info = one_json(ok(retouch("enhance", portrait, "-o", tmp_path / "a.png", "--task", "denoise",
                               "--noise-level", "10", "--json")))
    assert [f["label"] for f in info["flags"]] == ["face: strength 0.5"]
    plain = ok(retouch("enhance", portrait, "-o", tmp_path / "b.png", "--task", "denoise", "--noise-level", "10",
                       "--face-strength", "0.25", "--text-guard"))
    assert "flag: face: strength 0.25 at [" in plain.stdout
    none = one_json(ok(retouch("enhance", portrait, "-o", tmp_path / "c.png", "--task", "denoise",
                               "--face-strength", "1", "--json")))
    assert none["flags"] == []
