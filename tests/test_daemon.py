"""A real daemon on loopback: requests, pixel formats, masks, progress, the model cache, concurrency, cancellation,
bad requests, unauthenticated traffic and the daemon's life cycle.

The builtin models are being retrained, so nothing here judges image quality: only shapes, dtypes, alpha, channel
order, determinism and consistency between equivalent requests, error codes and messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zmq
from daemon_process import start_daemon, stop_daemon
from retouch import connection, protocol
from retouch.client import Client, Job, Progress, Result
from retouch.errors import (
    BadRequest,
    Cancelled,
    DaemonUnavailable,
    ProtocolMismatch,
    RetouchError,
    UnknownModel,
    UnknownTask,
    error_from_wire,
)
from retouch.pixels import NUMPY_DTYPES, decode_image, frame_to_array, linear_to_srgb, srgb_to_linear
from retouch.protocol import ImageSpec

H, W = 24, 32  # small: the machine is busy


# ---- helpers -------------------------------------------------------------------------------------------------------
def photo(h: int = H, w: int = W, seed: int = 0) -> np.ndarray:
    """A smooth but textured H x W x 3 float32 image in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 0.2 + 0.6 * x / w
    g = 0.3 + 0.4 * y / h
    b = 0.5 + 0.3 * np.sin(x / 3.0) * np.cos(y / 4.0)
    img = np.stack([r, g, b], axis=2) + rng.normal(0, 0.03, (h, w, 3))
    return np.clip(img, 0, 1).astype(np.float32)


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def with_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.concatenate([rgb, alpha[:, :, None].astype(rgb.dtype)], axis=2)


def half_alpha(h: int, w: int, top: float) -> np.ndarray:
    """Left half transparent, right half opaque."""
    a = np.zeros((h, w), np.float32)
    a[:, w // 2 :] = top
    return a


def spec_of(arr: np.ndarray, order: str | None = None, transfer: str = "srgb", stride: int = 0) -> ImageSpec:
    dtype = {np.dtype(v): k for k, v in NUMPY_DTYPES.items()}[arr.dtype]
    order = order or {1: "GRAY", 3: "RGB", 4: "RGBA"}[1 if arr.ndim == 2 else arr.shape[2]]
    return ImageSpec(arr.shape[1], arr.shape[0], dtype, order, transfer, stride)


def enhance(
    client: Client, arr: np.ndarray, order: str | None = None, transfer: str = "srgb", scale: int = 2, **kwargs: Any
) -> tuple[np.ndarray, Result]:
    spec = spec_of(arr, order, transfer)
    result = client.enhance("upscale", np.ascontiguousarray(arr).tobytes(), spec, params={"scale": scale}, **kwargs)
    return frame_to_array(result.spec, result.pixels), result


def bicubic(rgb: np.ndarray, scale: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


@contextlib.contextmanager
def raw_socket() -> Iterator[tuple[zmq.Socket, bytes]]:
    """A DEALER of our own on the daemon the current runtime dir names, with the daemon's key."""
    info = connection.read_connection_file()
    assert info is not None
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(connection.endpoint(info))
    try:
        yield sock, info["key"].encode()
    finally:
        sock.close(0)


def receive(sock: zmq.Socket, key: bytes, timeout: float = 30.0) -> protocol.Message | None:
    if not sock.poll(int(timeout * 1000)):
        return None
    return protocol.decode(key, sock.recv_multipart())


def raw_request(header: dict[str, Any], buffers: list[bytes] | None = None) -> protocol.Message:
    """Send a correctly signed message built by hand; return the daemon's first answer to it."""
    with raw_socket() as (sock, key):
        frames = protocol.encode(key, header, buffers or [])
        msg_id = json.loads(frames[2])["msg_id"]
        sock.send_multipart(frames)
        while True:
            msg = receive(sock, key)
            assert msg is not None, "the daemon did not answer"
            if msg.header.get("parent_id") == msg_id:
                return msg


def assert_dropped(frames: list[bytes]) -> None:
    """Send `frames`, then a ping on the same connection: the ping's answer must be the first thing that comes back
    (messages of one connection are handled in order), and nothing may follow it."""
    with raw_socket() as (sock, key):
        sock.send_multipart(frames)
        ping = protocol.encode(key, {"type": "ping"})
        sock.send_multipart(ping)
        first = receive(sock, key)
        assert first is not None
        assert first.header.get("parent_id") == json.loads(ping[2])["msg_id"], first.header
        assert first.header["payload"]["pong"] is True
        assert not sock.poll(300), "the dropped message got an answer"


def dropped(client: Client) -> dict[str, int]:
    return dict(client.status()["dropped"])


def expect_error(client: Client, exc_type: type[RetouchError], code: str, *words: str, **submit: Any) -> str:
    """Submit a job that must fail with `exc_type`/`code` and a message with all of `words`; the daemon lives on."""
    submit.setdefault("task", "upscale")
    submit.setdefault("pixels", to_u8(photo()).tobytes())
    submit.setdefault("spec", ImageSpec(W, H, "u8", "RGB"))
    with pytest.raises(exc_type) as exc:
        client.enhance(submit.pop("task"), submit.pop("pixels"), submit.pop("spec"), **submit)
    assert exc.value.code == code, exc.value
    for word in words:
        assert word in exc.value.message, exc.value.message
    assert client.ping()["pong"] is True
    return exc.value.message


def gone(pid: int) -> bool:
    """The process has exited (a zombie counts as exited: orphans may not be reaped quickly in containers)."""
    if not connection.pid_alive(pid):
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def wait_for(pred: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


BIG = (256, 256)  # a job that runs for a good while at tile 32 and scale 4 (225 tiles)


def submit_big(client: Client) -> Job:
    h, w = BIG
    img = to_u8(photo(h, w, seed=7))
    return client.submit("upscale", img.tobytes(), spec_of(img), params={"scale": 4}, tile=32)


# ---- small requests ------------------------------------------------------------------------------------------------
def test_ping(client: Client, shared_daemon: tuple[Path, subprocess.Popen]) -> None:
    payload = client.ping()
    assert payload == {"pong": True, "pid": shared_daemon[1].pid, "version": protocol.PROTOCOL_VERSION}


def test_status_payload(client: Client, shared_daemon: tuple[Path, subprocess.Popen]) -> None:
    st = client.status()
    info = connection.read_connection_file()
    assert info is not None
    assert st["pid"] == shared_daemon[1].pid == info["pid"]
    assert st["version"] == 1
    assert st["host"] == "127.0.0.1"
    assert st["port"] == info["port"]
    assert st["device"] == "cpu" or st["device"].startswith("cuda:")
    assert st["precision"] == "auto"
    assert st["uptime"] >= 0
    assert isinstance(st["queued"], int)
    assert st["running"] is None or {"job_id", "task", "fraction", "stage"} <= set(st["running"])
    assert isinstance(st["completed"], int)
    assert isinstance(st["loaded_models"], list)
    assert isinstance(st["model_loads"], int)
    assert isinstance(st["dropped"], dict)


def test_models_payload(client: Client) -> None:
    models = {m["name"]: m for m in client.models()}
    for scale in (2, 4):
        m = models[f"retouch-upscale-x{scale}"]
        assert m["builtin"] is True
        assert m["task"] == "upscale"
        assert m["scale"] == scale
        assert m["path"].endswith(f"retouch-upscale-x{scale}.safetensors")
        assert isinstance(m["loaded"], bool)
        assert m["description"]


def test_tasks_payload(client: Client) -> None:
    tasks = {t["name"]: t for t in client.tasks()}
    up = tasks["upscale"]
    assert up["default_model"] == "retouch-upscale-x2"
    assert up["label"] and up["description"]
    own = [p for p in up["params"] if p["group"] == "task"]
    scale, ensemble = own
    assert ensemble["name"] == "ensemble" and ensemble["kind"] == "bool" and ensemble["default"] is False
    assert scale["name"] == "scale"
    assert scale["kind"] == "int"
    assert scale["default"] == 2
    assert scale["choices"] == [2, 4]
    assert set(tasks) >= {"upscale", "denoise", "sharpen", "tone"}
    common = {p["name"]: p["group"] for p in up["params"] if p["group"] != "task"}
    assert common == {"auto_exposure": "pre", "auto_white_balance": "pre", "strength": "post", "grain": "post",
                      "grain_seed": "post", "color_fix": "post", "face_strength": "post", "review": "review",
                      "text_guard": "review", "protect_text": "review"}
    pre_post = [name for name, group in common.items() if group in ("pre", "post")]
    for t in tasks.values():  # every task offers the same pre/post controls; model tasks the review map too
        assert [p["name"] for p in t["params"] if p["group"] in ("pre", "post")] == pre_post
        assert any(p["name"] == "review" for p in t["params"]) == (t["name"] != "tone")
    noise = next(p for p in tasks["denoise"]["params"] if p["name"] == "noise_level")
    assert noise["default"] == "auto" and noise["allow_auto"] and noise["maximum"] == 50.0


# ---- enhance: formats ----------------------------------------------------------------------------------------------
def test_upscale_u8_rgba_doubles_and_carries_alpha(client: Client) -> None:
    rgba = to_u8(with_alpha(photo(), half_alpha(H, W, 1.0)))
    out, result = enhance(client, rgba)
    assert result.spec == ImageSpec(2 * W, 2 * H, "u8", "RGBA", "srgb", 0)
    assert out.shape == (2 * H, 2 * W, 4)
    assert out.dtype == np.uint8
    alpha = out[:, :, 3]
    margin = 4  # bicubic rings a few output pixels around the edge
    assert (alpha[:, : W - margin] == 0).all()
    assert (alpha[:, W + margin :] == 255).all()
    info = result.info
    assert info["model"] == "retouch-upscale-x2"
    assert info["scale"] == 2
    assert info["task"] == "upscale"
    assert info["params"]["scale"] == 2
    assert info["params"]["strength"] == 1.0 and info["params"]["color_fix"] == "none"
    assert info["input_size"] == [W, H]
    assert info["output_size"] == [2 * W, 2 * H]
    assert info["tiles"] >= 1
    assert result.job_id.startswith("job-")


def test_upscale_is_deterministic(client: Client) -> None:
    rgba = to_u8(with_alpha(photo(seed=3), half_alpha(H, W, 1.0)))
    a, _ = enhance(client, rgba)
    b, _ = enhance(client, rgba)
    assert np.array_equal(a, b)


def test_opaque_rgb_stays_rgb_and_opaque_rgba_stays_opaque(client: Client) -> None:
    rgb = to_u8(photo(seed=4))
    out_rgb, res = enhance(client, rgb)
    assert res.spec.order == "RGB"
    assert out_rgb.shape == (2 * H, 2 * W, 3)
    out_rgba, _ = enhance(client, with_alpha(rgb, np.full((H, W), 255, np.uint8)))
    assert (out_rgba[:, :, 3] == 255).all()
    assert np.array_equal(out_rgba[:, :, :3], out_rgb)


def test_upscale_x4(client: Client) -> None:
    rgba = to_u8(with_alpha(photo(16, 20, seed=5), half_alpha(16, 20, 1.0)))
    out, result = enhance(client, rgba, scale=4)
    assert out.shape == (64, 80, 4)
    assert result.info["model"] == "retouch-upscale-x4"
    assert (out[:, : 40 - 6, 3] == 0).all()
    assert (out[:, 40 + 6 :, 3] == 255).all()


def test_u16_rgba(client: Client) -> None:
    rgb = photo(seed=1)
    # the same colours as the u8 image below, exactly (x * 257 maps 0..255 onto 0..65535)
    rgba8 = to_u8(with_alpha(rgb, half_alpha(H, W, 1.0)))
    rgba16 = rgba8.astype(np.uint16) * 257
    out, result = enhance(client, rgba16)
    assert result.spec == ImageSpec(2 * W, 2 * H, "u16", "RGBA", "srgb", 0)
    assert out.dtype == np.uint16
    assert out.shape == (2 * H, 2 * W, 4)
    assert out[:, :, :3].max() > 255  # not u8 values widened
    assert len(np.unique(out[:, :, :3])) > 256  # finer steps than 8 bits
    assert (out[:, : W - 4, 3] == 0).all()
    assert (out[:, W + 4 :, 3] == 65535).all()
    # u8 and u16 inputs meaning the same colours go through the same float pipeline
    out8, _ = enhance(client, rgba8)
    assert max_diff(out / 257.0, out8) <= 1.0


def test_f32_rgb(client: Client) -> None:
    rgb8 = to_u8(photo(seed=2))
    rgb32 = rgb8.astype(np.float32) / np.float32(255)
    out, result = enhance(client, rgb32)
    assert result.spec == ImageSpec(2 * W, 2 * H, "f32", "RGB", "srgb", 0)
    assert out.dtype == np.float32
    assert out.shape == (2 * H, 2 * W, 3)
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    out8, _ = enhance(client, rgb8)
    assert max_diff(out * 255, out8) <= 0.51  # same model output, only the final rounding differs


def test_f16_rgba(client: Client) -> None:
    rgba = with_alpha(photo(seed=2), half_alpha(H, W, 1.0)).astype(np.float16)
    out, result = enhance(client, rgba)
    assert result.spec.dtype == "f16"
    assert out.dtype == np.float16
    assert out.shape == (2 * H, 2 * W, 4)
    assert np.isfinite(out).all()
    assert (out[:, : W - 4, 3] == 0).all()
    assert (out[:, W + 4 :, 3] == 1).all()


def test_bgra_matches_rgba_with_channels_swapped(client: Client) -> None:
    rgba = to_u8(with_alpha(photo(seed=6), half_alpha(H, W, 1.0)))
    bgra = np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]])
    out_rgba, _ = enhance(client, rgba)
    out_bgra, result = enhance(client, bgra, order="BGRA")
    assert result.spec.order == "BGRA"
    assert out_bgra.shape == out_rgba.shape
    assert np.array_equal(out_bgra, out_rgba[:, :, [2, 1, 0, 3]])


def test_gray(client: Client) -> None:
    gray = to_u8(photo(seed=8).mean(axis=2))
    out, result = enhance(client, gray[:, :, None], order="GRAY")
    assert result.spec == ImageSpec(2 * W, 2 * H, "u8", "GRAY", "srgb", 0)
    assert out.shape == (2 * H, 2 * W, 1)
    # internally gray is R = G = B: the same as sending the replicated RGB image and averaging the result
    work = decode_image(ImageSpec(W, H, "u8", "GRAY"), gray.tobytes())
    assert work.gray and work.alpha is None
    assert work.color.shape == (H, W, 3)
    assert np.array_equal(work.color[:, :, 0], work.color[:, :, 1])
    assert np.array_equal(work.color[:, :, 0], work.color[:, :, 2])
    rgb_out, _ = enhance(client, np.repeat(gray[:, :, None], 3, axis=2))
    assert max_diff(out[:, :, 0], rgb_out.astype(np.float32).mean(axis=2)) <= 1.0


def test_linear_transfer(client: Client) -> None:
    """A linear-light image is handled as its sRGB encoding and handed back linear."""
    srgb = photo(seed=9)
    linear = srgb_to_linear(srgb)
    out_lin, result = enhance(client, linear, transfer="linear")
    assert result.spec.transfer == "linear"
    assert result.spec.dtype == "f32"
    out_srgb, _ = enhance(client, linear_to_srgb(linear))
    np.testing.assert_allclose(out_lin, srgb_to_linear(out_srgb), atol=1e-5)
    assert not np.allclose(out_lin, out_srgb, atol=1e-2)  # it really came back in linear light


def test_strided_input_equals_packed(client: Client) -> None:
    rgba = to_u8(with_alpha(photo(seed=10), half_alpha(H, W, 1.0)))
    stride = W * 4 + 12
    padded = np.full((H, stride), 0xAB, np.uint8)
    padded[:, : W * 4] = rgba.reshape(H, W * 4)
    spec = ImageSpec(W, H, "u8", "RGBA", "srgb", stride)
    result = client.enhance("upscale", padded.tobytes(), spec, params={"scale": 2})
    assert result.spec.stride == 0  # results are tightly packed
    packed, _ = enhance(client, rgba)
    assert np.array_equal(frame_to_array(result.spec, result.pixels), packed)


def test_preview_request_works_like_enhance(client: Client) -> None:
    rgb = to_u8(photo(seed=11))
    spec = spec_of(rgb)
    result = client.enhance("upscale", rgb.tobytes(), spec, params={"scale": 2}, preview=True)
    assert (result.spec.width, result.spec.height) == (2 * W, 2 * H)
    ref, _ = enhance(client, rgb)
    assert np.array_equal(frame_to_array(result.spec, result.pixels), ref)


@pytest.mark.parametrize(("h", "w", "tile"), [(1, 1, None), (1, 7, None), (7, 1, None), (33, 70, 32)])
def test_odd_sizes(client: Client, h: int, w: int, tile: int | None) -> None:
    rgba = to_u8(with_alpha(photo(h, w, seed=20), np.ones((h, w), np.float32)))
    out, result = enhance(client, rgba, tile=tile)
    assert out.shape == (2 * h, 2 * w, 4)
    assert (out[:, :, 3] == 255).all()
    if tile:
        assert result.info["tile"] == tile
        assert result.info["tiles"] > 1


# ---- masks ---------------------------------------------------------------------------------------------------------
def test_mask_zero_gives_bicubic_and_255_gives_model_output(client: Client) -> None:
    rgb = to_u8(photo(seed=12))
    pixels, spec = rgb.tobytes(), spec_of(rgb)
    model_out, _ = enhance(client, rgb)
    expected_bicubic = to_u8(np.clip(bicubic(rgb.astype(np.float32) / np.float32(255), 2), 0, 1))

    zero = client.enhance("upscale", pixels, spec, params={"scale": 2}, mask=bytes(W * H))
    out0 = frame_to_array(zero.spec, zero.pixels)
    assert out0.shape == model_out.shape
    assert max_diff(out0, expected_bicubic) <= 1.0
    assert max_diff(out0, model_out) > 1.0  # not the model output

    full = client.enhance("upscale", pixels, spec, params={"scale": 2}, mask=b"\xff" * (W * H))
    assert max_diff(frame_to_array(full.spec, full.pixels), model_out) <= 1.0


def test_half_mask_processes_only_the_selection(client: Client) -> None:
    rgba = to_u8(with_alpha(photo(seed=13), half_alpha(H, W, 1.0)))
    model_out, _ = enhance(client, rgba)
    mask = np.zeros((H, W), np.uint8)
    mask[:, W // 2 :] = 255
    out, _ = enhance(client, rgba, mask=mask.tobytes())
    expected_bicubic = to_u8(np.clip(bicubic(rgba[:, :, :3].astype(np.float32) / np.float32(255), 2), 0, 1))
    m = 4
    assert max_diff(out[:, : W - m, :3], expected_bicubic[:, : W - m]) <= 1.0
    assert max_diff(out[:, W + m :, :3], model_out[:, W + m :, :3]) <= 1.0
    assert np.array_equal(out[:, :, 3], model_out[:, :, 3])  # the mask does not touch alpha


# ---- progress, model cache -----------------------------------------------------------------------------------------
def test_progress_comes_before_the_result(client: Client) -> None:
    img = to_u8(photo(64, 64, seed=14))
    job = client.submit("upscale", img.tobytes(), spec_of(img), params={"scale": 2}, tile=32)
    try:
        events = list(job.events())
    finally:
        job.close()
    assert job.job_id.startswith("job-")
    assert isinstance(events[-1], Result)
    progress = events[:-1]
    assert progress, "no progress events"
    assert all(isinstance(e, Progress) for e in progress)
    fractions = [e.fraction for e in progress]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert all(e.job_id == job.job_id and isinstance(e.stage, str) and e.stage for e in progress)
    assert events[-1].job_id == job.job_id
    assert events[-1].info["tiles"] > 1


def test_progress_callback_of_enhance(client: Client) -> None:
    seen: list[float] = []
    rgb = to_u8(photo(seed=15))
    client.enhance(
        "upscale", rgb.tobytes(), spec_of(rgb), on_progress=lambda p: seen.append(p.fraction), params={"scale": 2}
    )
    assert seen and seen == sorted(seen) and seen[-1] == 1.0


def test_model_is_loaded_once(client: Client) -> None:
    rgb = to_u8(photo(seed=16))
    enhance(client, rgb)
    st = client.status()
    loads = st["model_loads"]
    assert loads >= 1
    assert any(p.endswith("retouch-upscale-x2.safetensors") for p in st["loaded_models"])
    enhance(client, rgb)
    enhance(client, to_u8(photo(seed=17)))
    st2 = client.status()
    assert st2["model_loads"] == loads
    # the worker counts a job just after sending its result, so the count may lag behind by a moment
    assert wait_for(lambda: client.status()["completed"] >= st["completed"] + 2, 5)
    models = {m["name"]: m for m in client.models()}
    assert models["retouch-upscale-x2"]["loaded"] is True


# ---- several clients -----------------------------------------------------------------------------------------------
def test_several_clients_at_once(client: Client) -> None:
    colours = [(220, 30, 30), (30, 200, 40), (40, 50, 210), (128, 128, 128)]
    images = [np.ascontiguousarray(np.broadcast_to(np.array(c, np.uint8), (H, W, 3))) for c in colours]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(images))

    def work(i: int) -> None:
        try:
            own = Client(autostart=False, timeout=60)
            barrier.wait(10)
            out, res = enhance(own, images[i])
            assert res.info["input_size"] == [W, H]
            results[i] = out
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert sorted(results) == list(range(len(images)))
    palette = np.array(colours, np.float64)
    for i, out in results.items():
        assert out.shape == (2 * H, 2 * W, 3)
        mean = out.reshape(-1, 3).mean(axis=0)
        nearest = int(np.argmin(np.linalg.norm(palette - mean, axis=1)))
        assert nearest == i, (i, mean)
        alone, _ = enhance(client, images[i])  # the same job on its own gives the same pixels
        assert np.array_equal(out, alone)


# ---- cancellation --------------------------------------------------------------------------------------------------
def test_cancel_a_running_job(client: Client) -> None:
    job = submit_big(client)
    seen = 0
    started = time.monotonic()
    try:
        with pytest.raises(Cancelled):
            for event in job.events():
                assert isinstance(event, Progress), "the job finished before it could be cancelled"
                seen += 1
                if seen == 1:
                    job.cancel()
    finally:
        job.close()
    assert seen >= 1
    assert time.monotonic() - started < 30
    assert client.ping()["pong"] is True
    assert wait_for(lambda: client.status()["running"] is None)
    assert client.status()["queued"] == 0


def test_cancel_a_queued_job(client: Client) -> None:
    first = submit_big(client)
    try:
        rgb = to_u8(photo(seed=18))
        second = client.submit("upscale", rgb.tobytes(), spec_of(rgb), params={"scale": 2})
        try:
            assert second.position >= 1
            second.cancel()
            with pytest.raises(Cancelled, match="before it started"):
                list(second.events())
        finally:
            second.close()
        first.cancel()
        with pytest.raises(Cancelled):
            list(first.events())
    finally:
        first.close()
    assert client.ping()["pong"] is True
    assert wait_for(lambda: client.status()["running"] is None)
    # and the daemon still works afterwards
    out, _ = enhance(client, to_u8(photo(seed=18)))
    assert out.shape == (2 * H, 2 * W, 3)


def test_cancel_unknown_job(client: Client) -> None:
    with pytest.raises(BadRequest, match="no job 'job-nope'"):
        client.request("cancel", job_id="job-nope")


# ---- bad requests --------------------------------------------------------------------------------------------------
def test_unknown_task(client: Client) -> None:
    expect_error(client, UnknownTask, "unknown_task", "'despeckle'", "upscale", "denoise", task="despeckle")


def test_unknown_model(client: Client) -> None:
    expect_error(
        client,
        UnknownModel,
        "unknown_model",
        "'no-such-model'",
        "retouch-upscale-x2",
        model="no-such-model",
        params={"scale": 2},
    )


def test_unknown_parameter(client: Client) -> None:
    expect_error(client, BadRequest, "bad_request", "sharpness", "scale", "strength",
                 params={"scale": 2, "sharpness": 3})


def test_strength_out_of_range(client: Client) -> None:
    expect_error(client, BadRequest, "bad_request", "strength", "3", "0.0..1.0", params={"strength": 3})


def test_scale_3(client: Client) -> None:
    expect_error(client, BadRequest, "bad_request", "'scale'", "3", "2, 4", params={"scale": 3})


def test_scale_of_wrong_type(client: Client) -> None:
    expect_error(client, BadRequest, "bad_request", "'scale'", "int", params={"scale": "2"})


def test_x2_model_cannot_make_x4(client: Client) -> None:
    expect_error(client, BadRequest, "bad_request", "x2", "x4", model="retouch-upscale-x2", params={"scale": 4})


def test_wrong_frame_size(client: Client) -> None:
    expect_error(client, BadRequest, "bad_request", "100 bytes", f"needs {W * H * 3}", pixels=b"\x00" * 100)


def test_nan_pixels(client: Client) -> None:
    img = photo(seed=19)
    img[3, 4, 1] = np.nan
    expect_error(client, BadRequest, "bad_request", "NaN", pixels=img.tobytes(), spec=spec_of(img))


def test_bad_dtype_in_header(client: Client) -> None:
    image = {"width": W, "height": H, "dtype": "u12", "order": "RGBA", "transfer": "srgb"}
    msg = raw_request({"type": "enhance", "task": "upscale", "params": {}, "image": image}, [b"\x00" * (W * H * 8)])
    assert msg.type == "error"
    assert msg.header["error"]["code"] == "bad_request"
    assert "image.dtype 'u12'" in msg.header["error"]["message"]
    assert client.ping()["pong"] is True


def test_missing_image_description(client: Client) -> None:
    msg = raw_request({"type": "enhance", "task": "upscale", "params": {}}, [b"\x00" * 16])
    assert msg.type == "error"
    assert msg.header["error"]["code"] == "bad_request"
    assert "'image'" in msg.header["error"]["message"]
    assert client.ping()["pong"] is True


def test_missing_pixel_frame(client: Client) -> None:
    msg = raw_request({"type": "enhance", "task": "upscale", "image": ImageSpec(4, 4).to_header()})
    assert msg.header["error"]["code"] == "bad_request"
    assert "expected 1 pixel frame(s)" in msg.header["error"]["message"]
    assert "got 0" in msg.header["error"]["message"]


def test_mask_of_wrong_size(client: Client) -> None:
    expect_error(client, BadRequest, "bad_request", "mask", "10 bytes", f"needs {W * H}", mask=b"\xff" * 10)


def test_mask_announced_but_missing(client: Client) -> None:
    header = {"type": "enhance", "task": "upscale", "image": ImageSpec(4, 4).to_header(), "mask": True}
    msg = raw_request(header, [b"\x00" * 64])
    assert msg.header["error"]["code"] == "bad_request"
    assert "expected 2 pixel frame(s) (image, mask), got 1" in msg.header["error"]["message"]


@pytest.mark.parametrize("tile", [5, 31, 9000])
def test_bad_tile(client: Client, tile: int) -> None:
    expect_error(client, BadRequest, "bad_request", "'tile'", "32 to 8192", f"got {tile}", tile=tile)


def test_bad_device(client: Client) -> None:
    msg = raw_request(
        {"type": "enhance", "task": "upscale", "device": "tpu", "image": ImageSpec(4, 4).to_header()}, [b"\x00" * 64]
    )
    assert msg.header["error"]["code"] == "bad_request"
    assert "'device'" in msg.header["error"]["message"]
    assert "'tpu'" in msg.header["error"]["message"]


def test_unknown_request_type(client: Client) -> None:
    with pytest.raises(BadRequest) as exc:
        client.request("frobnicate")
    assert exc.value.code == "bad_request"
    assert "unknown request type 'frobnicate'" in exc.value.message
    assert "enhance" in exc.value.message
    assert client.ping()["pong"] is True


def test_error_reply_addresses_the_request(client: Client) -> None:
    msg = raw_request({"type": "frobnicate", "msg_id": "my-request"})
    assert msg.type == "error"
    assert msg.header["parent_id"] == "my-request"
    assert msg.header["protocol"] == protocol.PROTOCOL_VERSION


# ---- unauthenticated and foreign traffic ---------------------------------------------------------------------------
def test_wrong_key_gets_no_reply_and_is_counted(client: Client) -> None:
    before = dropped(client).get("bad_signature", 0)
    assert_dropped(protocol.encode(b"not the key", {"type": "ping"}))
    assert_dropped(protocol.encode(b"not the key", {"type": "shutdown"}))
    assert dropped(client).get("bad_signature", 0) == before + 2


def test_tampered_message_gets_no_reply(client: Client) -> None:
    info = connection.read_connection_file()
    assert info is not None
    frames = protocol.encode(info["key"].encode(), {"type": "ping"}, [b"pixels"])
    frames[3] = b"pixelz"
    before = dropped(client).get("bad_signature", 0)
    assert_dropped(frames)
    assert dropped(client).get("bad_signature", 0) == before + 1


@pytest.mark.parametrize(
    "frames",
    [[b"hello"], [b"GET / HTTP/1.1", b"\r\n"], [b"x", b"y", b"z"], [b"\x00" * 1000, b"", b"", b""]],
    ids=["one-frame", "http", "three-frames", "zeros"],
)
def test_garbage_frames_get_no_reply_and_are_counted(client: Client, frames: list[bytes]) -> None:
    before = dropped(client).get("malformed", 0)
    assert_dropped(frames)
    assert dropped(client).get("malformed", 0) == before + 1


def test_replayed_message_gets_no_second_reply(client: Client) -> None:
    with raw_socket() as (sock, key):
        frames = protocol.encode(key, {"type": "ping"})
        sock.send_multipart(frames)
        first = receive(sock, key)
        assert first is not None and first.header["payload"]["pong"] is True
    assert_dropped(frames)


def test_replayed_message_is_counted_as_replayed(client: Client) -> None:
    with raw_socket() as (sock, key):
        frames = protocol.encode(key, {"type": "ping"})
        sock.send_multipart(frames)
        assert receive(sock, key) is not None
    before = dropped(client)
    assert_dropped(frames)
    assert dropped(client).get("replayed", 0) == before.get("replayed", 0) + 1
    assert dropped(client).get("bad_signature", 0) == before.get("bad_signature", 0)


def test_signed_header_without_type_gets_an_error_reply(client: Client) -> None:
    with raw_socket() as (sock, key):
        header_json = json.dumps({"protocol": 1, "msg_id": "no-type"}).encode()
        sock.send_multipart([protocol.PROTOCOL_TAG, protocol.sign(key, header_json, []), header_json])
        msg = receive(sock, key, timeout=1)
    assert msg is not None, "no answer"
    assert msg.type == "error"
    assert msg.header["parent_id"] == "no-type"
    assert msg.header["error"]["code"] == "bad_request"
    assert "type" in msg.header["error"]["message"]


def test_other_protocol_version_gets_a_mismatch_error(client: Client) -> None:
    with raw_socket() as (sock, key):
        header_json = json.dumps({"protocol": 2, "type": "ping", "msg_id": "from-the-future"}).encode()
        sock.send_multipart([b"retouch/2", protocol.sign(key, header_json, []), header_json])
        msg = receive(sock, key, timeout=10)
    assert msg is not None, "no answer to a correctly signed protocol-2 message"
    assert msg.type == "error"
    assert msg.header["parent_id"] == "from-the-future"
    err = msg.header["error"]
    assert err["code"] == "protocol_mismatch"
    assert "protocol 2" in err["message"]
    assert "protocol 1" in err["message"]
    assert isinstance(error_from_wire(err), ProtocolMismatch)
    assert client.ping()["pong"] is True


def test_other_protocol_with_wrong_key_is_dropped(client: Client) -> None:
    header_json = json.dumps({"protocol": 2, "type": "ping", "msg_id": "x"}).encode()
    before = dropped(client).get("bad_signature", 0)
    assert_dropped([b"retouch/2", protocol.sign(b"wrong", header_json, []), header_json])
    assert dropped(client).get("bad_signature", 0) == before + 1


# ---- thread safety of what the main thread reads while the worker runs -------------------------------------------
def test_engine_loaded_is_safe_while_the_worker_uses_the_cache() -> None:
    from retouch.engine import Engine
    from retouch.engine.registry import ModelSpec

    engine = Engine(device="cpu")
    specs = [ModelSpec(f"m{i}", Path(f"/nonexistent/m{i}.pth"), False) for i in range(4)]
    for spec in specs:  # as if loaded: get() then only reorders the cache, as it does at the start of every job
        engine._cache[(str(spec.path), str(engine.device))] = object()  # type: ignore[assignment]
    stop = threading.Event()

    def worker() -> None:
        i = 0
        while not stop.is_set():
            engine.get(specs[i % len(specs)])
            i += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # make the race show up quickly
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert len(engine.loaded()) == len(specs)
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(old)


# ---- life cycle (each with a daemon of its own) --------------------------------------------------------------------
def test_shutdown_stops_the_process_and_removes_the_file(private_dirs: Path) -> None:
    proc = start_daemon(private_dirs)
    try:
        path = private_dirs / "daemon.json"
        assert path.exists()
        own = Client(autostart=False, timeout=30)
        assert own.ping()["pid"] == proc.pid
        assert own.request("shutdown") == {"stopping": True}
        assert proc.wait(20) == 0
        assert not path.exists()
        assert not own.is_running()
        with pytest.raises(DaemonUnavailable):
            own.ping()
    finally:
        stop_daemon(proc)


def test_sigterm_stops_the_daemon_cleanly(private_dirs: Path) -> None:
    proc = start_daemon(private_dirs)
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not (private_dirs / "daemon.json").exists()
    finally:
        stop_daemon(proc)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def test_stale_connection_file_is_replaced(private_dirs: Path) -> None:
    stale: connection.ConnectionInfo = {
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": 9,
        "key": "0" * 64,
        "pid": dead_pid(),
        "version": 1,
    }
    connection.write_connection_file(stale)
    own = Client(autostart=False, timeout=30)
    assert not own.is_running()
    proc = start_daemon(private_dirs)  # returns once the file names the new daemon
    try:
        info = connection.read_connection_file()
        assert info is not None
        assert info["pid"] == proc.pid
        assert info["key"] != stale["key"]
        assert stat_mode(private_dirs / "daemon.json") == 0o600
        assert own.ping()["pid"] == proc.pid
    finally:
        stop_daemon(proc)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_second_serve_does_not_start_a_second_daemon(private_dirs: Path) -> None:
    proc = start_daemon(private_dirs)
    try:
        path = private_dirs / "daemon.json"
        before = path.read_bytes()
        for extra in ([], ["--detach"]):
            second = subprocess.run(
                [sys.executable, "-m", "retouch", "serve", *extra],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert second.returncode == 0, second.stderr
            assert "already running" in second.stderr
            assert str(proc.pid) in second.stderr
            assert path.read_bytes() == before
        assert proc.poll() is None
        assert Client(autostart=False, timeout=30).ping()["pid"] == proc.pid
    finally:
        stop_daemon(proc)


def test_second_serve_without_connection_file_is_stopped_by_the_lock(private_dirs: Path) -> None:
    """Two daemons racing: the second gets past the file check but not past the runtime dir's lock."""
    proc = start_daemon(private_dirs)
    try:
        path = private_dirs / "daemon.json"
        saved = path.read_bytes()
        path.unlink()
        second = subprocess.run(
            [sys.executable, "-m", "retouch", "serve"], capture_output=True, text=True, timeout=120, check=False
        )
        assert second.returncode == 0, second.stderr
        assert "already running" in second.stderr
        assert not path.exists()  # the loser wrote nothing
        path.write_bytes(saved)
        os.chmod(path, 0o600)
        assert Client(autostart=False, timeout=30).ping()["pid"] == proc.pid
    finally:
        stop_daemon(proc)


def test_client_autostarts_a_daemon(private_dirs: Path) -> None:
    path = private_dirs / "daemon.json"
    assert not path.exists()
    assert Client(autostart=False).is_running() is False
    with pytest.raises(DaemonUnavailable):
        Client(autostart=False).ping()
    own = Client(autostart=True, timeout=30, start_timeout=120)
    pid = None
    try:
        payload = own.ping()  # runs `python -m retouch serve --detach` and waits for it
        info = connection.live_connection()
        assert info is not None
        pid = info["pid"]
        assert payload["pid"] == pid
        assert pid != os.getpid()
        assert own.status()["pid"] == pid
        assert (private_dirs / "daemon.log").exists()  # where the detached daemon logs
        assert own.ping()["pid"] == pid  # the second request finds the same daemon
        own.shutdown(wait=1)
        assert wait_for(lambda: not path.exists() and gone(pid), 20)
    finally:
        if pid is not None and not gone(pid):
            os.kill(pid, signal.SIGTERM)
