"""Client for the Retouch daemon (stdlib + pyzmq only, no numpy: vendored into the Krita and GIMP plugins).

    client = Client()                       # finds the daemon through its connection file, starts one if needed
    job = client.submit("upscale", pixels, ImageSpec(w, h, "u8", "RGBA"), params={"scale": 2})
    for event in job.events():              # Progress(...) events, then the Result
        ...
    job.cancel()                            # from another thread or between events

Every request uses its own DEALER socket, so one Client can be shared by a GUI and a worker thread, and a Job's
socket (`job.fd`) can be watched by an event loop (QSocketNotifier) with `job.poll()` to read what arrived.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.auth as zmq_auth

from . import connection, protocol
from .errors import Cancelled, DaemonTimeout, DaemonUnavailable, RetouchError, error_from_wire
from .protocol import ImageSpec

LIVENESS_INTERVAL = 2.0  # seconds of silence before checking that the daemon process still exists


@dataclass
class Progress:
    fraction: float
    stage: str
    job_id: str = ""


@dataclass
class Result:
    spec: ImageSpec
    pixels: bytes
    info: dict[str, Any] = field(default_factory=dict)
    job_id: str = ""
    review: bytes | None = None  # invention map, 8-bit gray at the result's size (params review=True)


def daemon_command() -> list[str]:
    """How to start a daemon: $RETOUCH_DAEMON_COMMAND, else this Python with the retouch package, else `retouch`."""
    override = os.environ.get("RETOUCH_DAEMON_COMMAND")
    if override:
        return [*shlex.split(override), "serve", "--detach"]
    exe = Path(sys.executable).name.lower()
    if exe.startswith("python"):
        import importlib.util

        if importlib.util.find_spec("retouch.server") is not None:
            return [sys.executable, "-m", "retouch", "serve", "--detach"]
    found = shutil.which("retouch")
    if found:
        return [found, "serve", "--detach"]
    raise DaemonUnavailable(
        "no Retouch daemon is running and the `retouch` command was not found: install Retouch "
        "(pip install retouch) or set RETOUCH_DAEMON_COMMAND to the retouch executable"
    )


def open_socket(context: zmq.Context, info: connection.ConnectionInfo) -> zmq.Socket:
    """A DEALER connected to the daemon; with CURVE when the daemon asks for it (remote use)."""
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    server_key = info.get("curve_serverkey")
    if server_key:
        key_file = os.environ.get("RETOUCH_CLIENT_KEY")
        if not key_file:
            sock.close(0)
            raise DaemonUnavailable("this daemon requires CURVE encryption: set RETOUCH_CLIENT_KEY to your client "
                                    "secret key file (made by `retouch keys` on the daemon's machine)")
        try:
            public, secret = zmq_auth.load_certificate(key_file)
        except (OSError, ValueError) as exc:
            sock.close(0)
            raise DaemonUnavailable(f"cannot read the CURVE client key {key_file}: {exc}") from None
        if secret is None:
            sock.close(0)
            raise DaemonUnavailable(f"{key_file} holds no secret key (use the .key_secret file)")
        sock.curve_serverkey = server_key.encode()
        sock.curve_publickey = public
        sock.curve_secretkey = secret
    sock.connect(connection.endpoint(info))
    return sock


class Client:
    def __init__(
        self,
        *,
        autostart: bool = True,
        start_timeout: float = 60.0,
        timeout: float = 10.0,
        path: Path | None = None,
    ) -> None:
        self.autostart = autostart
        self.start_timeout = start_timeout
        self.timeout = timeout
        self.path = path
        self.context = zmq.Context.instance()
        self._info: connection.ConnectionInfo | None = None

    # ---- finding the daemon -----------------------------------------------------------------------------------
    def connection(self) -> connection.ConnectionInfo:
        """The live daemon's connection info, starting a daemon first if none runs and autostart is on."""
        info = connection.live_connection(self.path)
        if info is None and self.autostart:
            self.start_daemon()
            info = connection.live_connection(self.path)
        if info is None:
            raise DaemonUnavailable(f"no Retouch daemon is running (no live connection file at "
                                    f"{self.path or connection.connection_path()})")
        self._info = info
        return info

    def start_daemon(self) -> None:
        cmd = daemon_command()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.start_timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DaemonUnavailable(f"could not start the daemon with {shlex.join(cmd)}: {exc}") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            why = f": {detail[-1]}" if detail else ""
            raise DaemonUnavailable(f"no Retouch daemon is running, and starting one failed ({shlex.join(cmd)} "
                                    f"exited with code {proc.returncode}){why}")

    def is_running(self) -> bool:
        return connection.live_connection(self.path) is not None

    # ---- sockets ----------------------------------------------------------------------------------------------
    def _socket(self) -> tuple[zmq.Socket, connection.ConnectionInfo]:
        info = self.connection()
        return open_socket(self.context, info), info

    def request(self, type_: str, timeout: float | None = None, **fields: Any) -> dict[str, Any]:
        """A small request (ping, status, models, tasks, shutdown, cancel); returns the reply payload."""
        sock, info = self._socket()
        try:
            key = info["key"].encode()
            header = protocol.reply_header(None, type_, **fields)
            sock.send_multipart(protocol.encode(key, header))
            deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not sock.poll(int(remaining * 1000)):
                    raise DaemonTimeout(f"the daemon (pid {info['pid']}) did not answer '{type_}' in time")
                msg = protocol.decode(key, sock.recv_multipart())
                if msg.header.get("parent_id") != header["msg_id"]:
                    continue
                if msg.type == "error":
                    raise error_from_wire(msg.header.get("error", {}))
                return dict(msg.header.get("payload", {}))
        finally:
            sock.close()

    def ping(self) -> dict[str, Any]:
        return self.request("ping")

    def status(self) -> dict[str, Any]:
        return self.request("status")

    def models(self) -> list[dict[str, Any]]:
        return list(self.request("models")["models"])

    def tasks(self) -> list[dict[str, Any]]:
        return list(self.request("tasks")["tasks"])

    def shutdown(self, wait: float = 10.0) -> None:
        """Ask the daemon to stop and wait until its process is gone."""
        info = self.connection()
        self.request("shutdown")
        deadline = time.monotonic() + wait
        while connection.pid_alive(info["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)

    # ---- jobs -------------------------------------------------------------------------------------------------
    def submit(
        self,
        task: str,
        pixels: bytes,
        spec: ImageSpec,
        *,
        params: dict[str, Any] | None = None,
        model: str | None = None,
        mask: bytes | None = None,
        tile: int | None = None,
        device: str | None = None,
        preview: bool = False,
    ) -> Job:
        """Send a job; returns once the daemon has accepted it (or raises the daemon's error)."""
        sock, info = self._socket()
        header = protocol.reply_header(
            None, "preview" if preview else "enhance", task=task, params=params or {}, model=model, tile=tile,
            device=device, image=spec.to_header(), mask=mask is not None,
        )
        buffers = [pixels] if mask is None else [pixels, mask]
        job = Job(sock, info, header["msg_id"], self.timeout)
        sock.send_multipart(protocol.encode(job.key, header, buffers), copy=False)
        job.wait_accepted()
        return job

    def enhance(
        self,
        task: str,
        pixels: bytes,
        spec: ImageSpec,
        on_progress: Callable[[Progress], None] | None = None,
        **kwargs: Any,
    ) -> Result:
        job = self.submit(task, pixels, spec, **kwargs)
        try:
            return job.result(on_progress)
        except KeyboardInterrupt:
            job.cancel()
            raise
        finally:
            job.close()


class Job:
    """One submitted job. Iterate `events()` or call `result()`; `cancel()` stops it on the daemon."""

    def __init__(self, sock: zmq.Socket, info: connection.ConnectionInfo, msg_id: str, timeout: float) -> None:
        self.sock = sock
        self.info = info
        self.key = info["key"].encode()
        self.msg_id = msg_id
        self.timeout = timeout
        self.job_id = ""
        self.position = 0
        self.done = False

    @property
    def fd(self) -> int:
        """File descriptor that becomes readable when a message may be waiting (for QSocketNotifier)."""
        return int(self.sock.getsockopt(zmq.FD))

    def wait_accepted(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.job_id:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.sock.poll(int(remaining * 1000)):
                self.close()
                raise DaemonTimeout(f"the daemon (pid {self.info['pid']}) did not accept the job in time")
            try:
                self._read()
            except RetouchError:
                self.close()
                raise

    def _read(self) -> Progress | Result | None:
        msg = protocol.decode(self.key, self.sock.recv_multipart(copy=True))
        h = msg.header
        if h.get("parent_id") != self.msg_id:
            return None
        if msg.type == "accepted":
            self.job_id = str(h["job_id"])
            self.position = int(h.get("position", 0))
            return None
        if msg.type == "progress":
            return Progress(float(h["fraction"]), str(h["stage"]), self.job_id)
        if msg.type == "result":
            self.done = True
            spec = ImageSpec.from_header(h["image"])
            spec.check_frame(msg.buffers[0], "result")
            info = dict(h.get("info", {}))
            review = None
            if isinstance(info.get("review"), dict) and len(msg.buffers) > 1:
                size = info["review"]
                if len(msg.buffers[1]) != int(size["width"]) * int(size["height"]):
                    raise RetouchError(f"the review frame has {len(msg.buffers[1])} bytes, not {size}")
                review = msg.buffers[1]
            return Result(spec, msg.buffers[0], info, self.job_id, review)
        if msg.type == "error":
            self.done = True
            raise error_from_wire(h.get("error", {}))
        return None

    def poll(self, timeout: float = 0.0) -> list[Progress | Result]:
        """Everything that arrived within `timeout` seconds (non-blocking with 0); raises the job's error."""
        events: list[Progress | Result] = []
        wait_ms = int(timeout * 1000)
        while not self.done and self.sock.poll(wait_ms, zmq.POLLIN):
            wait_ms = 0
            event = self._read()
            if event is not None:
                events.append(event)
        return events

    def events(self) -> Iterator[Progress | Result]:
        """Progress events, then the Result. Raises the daemon's error (Cancelled after cancel())."""
        while not self.done:
            if not self.sock.poll(int(LIVENESS_INTERVAL * 1000)):
                if connection.is_loopback(self.info["host"]) and not connection.pid_alive(self.info["pid"]):
                    self.done = True
                    raise RetouchError(f"the daemon (pid {self.info['pid']}) exited while running the job")
                continue
            event = self._read()
            if event is not None:
                yield event

    def result(self, on_progress: Callable[[Progress], None] | None = None) -> Result:
        for event in self.events():
            if isinstance(event, Result):
                return event
            if on_progress is not None:
                on_progress(event)
        raise RetouchError("the job ended without a result")

    def cancel(self) -> None:
        """Ask the daemon to stop this job; `events()`/`result()` then raise Cancelled."""
        if self.done or not self.job_id:
            return
        # A socket of its own: zmq sockets are not thread-safe, and cancel often comes from a GUI thread.
        sock = open_socket(zmq.Context.instance(), self.info)
        try:
            sock.send_multipart(protocol.encode(self.key, protocol.reply_header(None, "cancel", job_id=self.job_id)))
            sock.poll(int(self.timeout * 1000))  # the daemon's acknowledgement; the job socket gets the error
        finally:
            sock.close(0)

    def close(self) -> None:
        self.sock.close(0)


__all__ = ["Cancelled", "Client", "DaemonUnavailable", "Job", "Progress", "Result", "RetouchError", "ImageSpec"]
