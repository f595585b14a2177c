"""Faults and security limits, each against a real daemon: what happens when things go wrong must be boring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from daemon_process import start_daemon, stop_daemon
from retouch import connection, protocol
from retouch.client import Client, Progress, Result
from retouch.errors import BadRequest, Cancelled, DaemonUnavailable, InsecureRuntimeDir, RetouchError, UnsupportedModel
from retouch.imageio import read_image, write_image
from retouch.protocol import ImageSpec


def rgb(size: int, seed: int = 0) -> tuple[bytes, ImageSpec]:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    return img.tobytes(), ImageSpec(size, size, "u8", "RGB")


def long_job(client: Client) -> tuple:
    """A job that runs for seconds: many small tiles."""
    pixels, spec = rgb(384)
    return client.submit("upscale", pixels, spec, params={"scale": 4}, tile=32)


def first_progress(job) -> None:
    for event in job.events():
        if isinstance(event, Progress) and event.fraction > 0.06:
            return
    raise AssertionError("job ended before making progress")


def wait_idle(client: Client, seconds: float) -> bool:
    """True once the daemon runs nothing and has nothing queued."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = client.status()
        if status["running"] is None and status["queued"] == 0:
            return True
        time.sleep(0.05)
    return False


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "retouch", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or dict(os.environ))


@pytest.fixture
def own_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(runtime))
    proc = start_daemon(runtime)
    yield proc
    stop_daemon(proc)


# ---- the daemon dies -------------------------------------------------------------------------------------------
def test_kill_9_mid_job_is_reported_and_the_next_request_restarts_the_daemon(own_daemon) -> None:
    client = Client(autostart=False, timeout=30)
    job = long_job(client)
    first_progress(job)
    os.kill(own_daemon.pid, signal.SIGKILL)
    t = time.monotonic()
    with pytest.raises(RetouchError, match="exited while running the job"):
        for _ in job.events():
            pass
    assert time.monotonic() - t < 5
    own_daemon.wait()
    # the connection file is stale now; an autostarting client replaces it with a new daemon
    fresh = Client(autostart=True, timeout=30)
    pong = fresh.ping()
    assert pong["pid"] != own_daemon.pid
    fresh.shutdown(wait=5)


def test_kill_9_during_cli_job_leaves_no_output(tmp_path: Path, own_daemon) -> None:
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    write_image(src, np.random.default_rng(1).integers(0, 256, (384, 384, 3), dtype=np.uint8))
    proc = subprocess.Popen([sys.executable, "-m", "retouch", "enhance", str(src), "-o", str(dst), "--scale", "4",
                             "--tile", "32", "-q"], stderr=subprocess.PIPE, text=True)
    client = Client(autostart=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the daemon is busy with the CLI's job
        running = client.status()["running"]
        if running and running["fraction"] > 0.06:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the CLI's job never started")
    os.kill(own_daemon.pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "exited while running the job" in err
    assert "Traceback" not in err
    assert not dst.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "rt"]


# ---- the client dies -------------------------------------------------------------------------------------------
def test_vanished_clients_get_their_jobs_cancelled_and_memory_comes_back(own_daemon) -> None:
    client = Client(autostart=False, timeout=30)
    pixels, spec = rgb(192, seed=3)
    for _ in range(3):  # warm: model loaded, allocator settled
        client.enhance("upscale", pixels, spec, params={"scale": 4}, tile=64)
    before = rss_kb(own_daemon.pid)
    for i in range(20):
        job = client.submit("upscale", pixels, spec, params={"scale": 4}, tile=32)
        job.close()  # the client vanishes mid-job
        if not wait_idle(client, 60):
            pytest.fail(f"vanished client's job {i} was never cancelled")
    status = client.status()
    assert status["dropped"].get("client_gone", 0) >= 20
    assert status["completed"] == 3  # none of the 20 ran to the end
    after = rss_kb(own_daemon.pid)
    print(f"daemon RSS before {before} kB, after 20 vanished clients {after} kB ({(after / before - 1) * 100:+.1f} %)")
    assert after <= before * 1.05


# ---- bad models, out of memory -----------------------------------------------------------------------------------
def test_corrupt_model_file_is_named_and_other_models_keep_serving(tmp_path: Path, client: Client) -> None:
    bad = tmp_path / "4x-broken.safetensors"
    bad.write_bytes(b"\x00" * 64 + os.urandom(4096))
    pixels, spec = rgb(24)
    with pytest.raises(UnsupportedModel, match="4x-broken.safetensors"):
        client.enhance("upscale", pixels, spec, params={"scale": 2}, model=str(bad))
    truncated = tmp_path / "truncated.safetensors"
    builtin = Path(next(m["path"] for m in client.models() if m["name"] == "retouch-upscale-x2"))
    truncated.write_bytes(builtin.read_bytes()[:5000])
    with pytest.raises(UnsupportedModel, match="truncated.safetensors"):
        client.enhance("upscale", pixels, spec, params={"scale": 2}, model=str(truncated))
    result = client.enhance("upscale", pixels, spec, params={"scale": 2})
    assert (result.spec.width, result.spec.height) == (48, 48)


def test_injected_out_of_memory_halves_the_tile_and_the_job_completes(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("RETOUCH_FAULT_OOM_TILE", "100")  # tiles over 100 px (with context) fail like a full GPU
    proc = start_daemon(runtime)
    try:
        monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(runtime))
        client = Client(autostart=False, timeout=30)
        pixels, spec = rgb(160, seed=5)
        result = client.enhance("upscale", pixels, spec, params={"scale": 2}, tile=256)
        assert (result.spec.width, result.spec.height) == (320, 320)
        assert result.info["oom_retries"] >= 2  # 256 -> 128 -> 64
        assert result.info["tile"] <= 84
        expected = client.enhance("upscale", pixels, spec, params={"scale": 2}, tile=64)
        assert result.pixels == expected.pixels
    finally:
        stop_daemon(proc)


# ---- SIGTERM ---------------------------------------------------------------------------------------------------
def test_sigterm_mid_job_cancels_it_cleanly_and_removes_the_connection_file(own_daemon) -> None:
    client = Client(autostart=False, timeout=30)
    job = long_job(client)
    queued = client.submit("upscale", *rgb(32), params={"scale": 2})
    first_progress(job)
    own_daemon.send_signal(signal.SIGTERM)
    with pytest.raises(Cancelled):
        for _ in job.events():
            pass
    with pytest.raises(Cancelled, match="shutting down"):
        queued.result()
    assert own_daemon.wait(30) == 0
    assert not (Path(os.environ["RETOUCH_RUNTIME_DIR"]) / "daemon.json").exists()


# ---- output disk full --------------------------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_leaves_the_existing_output_untouched(tmp_path: Path, tiny_disk: Path, own_daemon) -> None:
    src = tmp_path / "in.png"
    write_image(src, np.random.default_rng(2).integers(0, 256, (192, 192, 3), dtype=np.uint8))  # out: ~300 kB
    dst = tiny_disk / "out.png"
    dst.write_bytes(b"previous result")
    proc = cli("enhance", str(src), "-o", str(dst), "--scale", "2", "-q")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], proc.stderr
    assert dst.read_bytes() == b"previous result"
    assert [p.name for p in tiny_disk.iterdir()] == ["out.png"]


def test_unwritable_output_folder_is_a_clear_error(tmp_path: Path, own_daemon) -> None:
    src = tmp_path / "in.png"
    write_image(src, np.zeros((16, 16, 3), np.uint8))
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes everywhere, except on a read-only file system
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(locked)],
                          capture_output=True).returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs")
    try:
        proc = cli("enhance", str(src), "-o", str(locked / "out.png"), "-q")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(locked)], check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and ("ermission denied" in lines[0] or "Read-only file system" in lines[0]), proc.stderr
    assert not (locked / "out.png").exists()


# ---- security limits ---------------------------------------------------------------------------------------------
def test_runtime_dir_writable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(shared))
    with pytest.raises(InsecureRuntimeDir, match="others can write"):
        connection.runtime_dir()
    proc = cli("serve")
    assert proc.returncode == 1
    assert "refusing runtime dir" in proc.stderr and "chmod 700" in proc.stderr
    assert not (shared / "daemon.json").exists()
    proc = cli("status")
    assert proc.returncode == 1 and "refusing runtime dir" in proc.stderr


def test_image_over_the_pixel_limit_is_refused_before_its_frame(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    proc = start_daemon(runtime, None, "--max-megapixels", "0.01")
    try:
        monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(runtime))
        client = Client(autostart=False)
        assert client.status()["max_pixels"] == 10_000
        with pytest.raises(BadRequest, match=r"200x200 = 0.04 MP; this daemon accepts at most 0.01 MP"):
            client.enhance("upscale", *rgb(200))
        # a huge declared size with a tiny frame: refused by the limit, nothing allocated
        spec = ImageSpec(60000, 60000, "f32", "RGBA")
        with pytest.raises(BadRequest, match="60000x60000"):
            client.enhance("upscale", b"\x00" * 16, spec)
        assert client.enhance("upscale", *rgb(64), params={"scale": 2}).spec.width == 128
    finally:
        stop_daemon(proc)


def raw_request(header: dict, key: bytes | None = None, buffers: list[bytes] = ()) -> protocol.Message | None:
    info = connection.read_connection_file()
    assert info is not None
    key = key or info["key"].encode()
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(connection.endpoint(info))
    try:
        sock.send_multipart(protocol.encode(key, header, buffers))
        if not sock.poll(3000):
            return None
        return protocol.decode(info["key"].encode(), sock.recv_multipart())
    finally:
        sock.close()


def test_deeply_nested_header_gets_an_error(client: Client) -> None:
    nested: object = 1
    for _ in range(40):
        nested = [nested]
    msg = raw_request({"type": "ping", "deep": nested})
    assert msg is not None and msg.type == "error"
    assert "nested deeper than 32" in msg.header["error"]["message"]
    assert client.ping()["pong"]


def test_message_with_an_old_time_is_dropped_as_a_replay(client: Client) -> None:
    before = client.status()["dropped"].get("replayed", 0)
    assert raw_request({"type": "ping", "time": time.time() - 3600}) is None
    assert client.status()["dropped"].get("replayed", 0) == before + 1
    assert raw_request({"type": "ping"}) is not None  # a fresh one passes


def test_cli_refuses_a_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = tmp_path / "big.png"
    write_image(big, np.zeros((1500, 1000, 3), np.uint8))  # small file, 1.5 MP of pixels
    monkeypatch.setenv("RETOUCH_MAX_PIXELS", "1000000")
    proc = cli("enhance", str(big), "-o", str(tmp_path / "out.png"))
    assert proc.returncode == 1
    assert "1000x1500 = 2 MP, over the limit of 1 MP" in proc.stderr
    monkeypatch.delenv("RETOUCH_MAX_PIXELS")
    assert read_image(big).pixels.shape == (1500, 1000, 3)


# ---- remote use: CURVE -------------------------------------------------------------------------------------------
def test_non_loopback_listen_without_curve_is_refused() -> None:
    proc = cli("serve", "--listen", "0.0.0.0")
    assert proc.returncode == 1
    assert "refusing to listen on 0.0.0.0" in proc.stderr and "--curve" in proc.stderr


def test_curve_remote_client_needs_the_right_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = tmp_path / "keys"
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("RETOUCH_KEYS_DIR", str(keys))
    made = cli("keys", "--client", "laptop")
    assert made.returncode == 0, made.stderr
    cli("keys", "--client", "intruder")
    (keys / "authorized" / "intruder.key").unlink()  # made, but not allowed in
    proc = start_daemon(runtime, None, "--listen", "127.0.0.2", "--curve")
    try:
        info = connection.read_connection_file(runtime / "daemon.json")
        assert info is not None and info["host"] == "127.0.0.2" and info["curve_serverkey"]
        remote_copy = tmp_path / "copied-daemon.json"  # what a user copies to the other machine
        remote_copy.write_text(json.dumps(info))
        monkeypatch.setenv("RETOUCH_CONNECTION_FILE", str(remote_copy))

        monkeypatch.setenv("RETOUCH_CLIENT_KEY", str(keys / "clients" / "laptop.key_secret"))
        good = Client(autostart=False, timeout=10)
        result = good.enhance("upscale", *rgb(24), params={"scale": 2})
        assert isinstance(result, Result) and result.spec.width == 48

        monkeypatch.delenv("RETOUCH_CLIENT_KEY")
        with pytest.raises(DaemonUnavailable, match="requires CURVE"):
            Client(autostart=False).ping()

        monkeypatch.setenv("RETOUCH_CLIENT_KEY", str(keys / "clients" / "intruder.key_secret"))
        with pytest.raises(RetouchError, match="did not answer"):
            Client(autostart=False, timeout=2).ping()
    finally:
        stop_daemon(proc)


def test_several_jobs_of_one_vanished_client_all_stop(own_daemon) -> None:
    client = Client(autostart=False, timeout=30)
    jobs = [long_job(client) for _ in range(3)]
    for job in jobs:
        job.close()
    if not wait_idle(client, 30):
        pytest.fail("jobs of a vanished client kept running")
    assert client.ping()["pong"]


def test_cancel_from_another_thread(own_daemon) -> None:
    client = Client(autostart=False, timeout=30)
    job = long_job(client)
    first_progress(job)
    threading.Thread(target=job.cancel).start()
    with pytest.raises(Cancelled):
        job.result()
