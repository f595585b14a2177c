"""The daemon: a ZeroMQ ROUTER on loopback, a job queue and one worker thread that owns the engine and its models.

The main thread only receives, authenticates, validates and answers small requests; pixel work happens in the
worker, which sends its replies back through an inproc socket so that only the main thread touches the ROUTER.
Nothing a client sends can stop the daemon: a message that fails authentication is dropped and counted, every
other bad request gets an `error` reply naming what was wrong.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import zmq

from . import connection, protocol
from .curve import CurveKeys
from .engine import DEFAULT_VRAM_BUDGET, Engine
from .engine.device import pick_device
from .engine.registry import list_models
from .errors import AuthError, BadRequest, Cancelled, ProtocolMismatch, Replayed, RetouchError, shown
from .jobs import process_frame
from .protocol import ImageSpec, mask_spec
from .tasks import TASKS, get_task

log = logging.getLogger("retouch.server")

OUTBOX = "inproc://retouch-outbox"
PROGRESS_INTERVAL = 0.1  # seconds between two progress messages of one job
MAX_BATCH = 256  # messages handled per poll round
DEFAULT_MAX_PIXELS = 200_000_000  # per job (input pixels): a 100 MP photo with room to spare


@dataclass
class Job:
    job_id: str
    identity: bytes
    parent: dict[str, Any]
    task: str
    params: dict[str, Any]
    model: str | None
    tile: int | None
    device: str | None
    spec: ImageSpec
    frame: bytes
    mask_frame: bytes | None
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "queued"  # queued | running | done
    fraction: float = 0.0
    stage: str = "queued"


class AlreadyRunning(RetouchError):
    code = "already_running"


class InsecureListen(RetouchError):
    code = "insecure_listen"


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.2f}".rstrip("0").rstrip(".")


class Daemon:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        device: str = "auto",
        precision: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        curve: CurveKeys | None = None,
        vram_budget: int = DEFAULT_VRAM_BUDGET,
    ) -> None:
        self.host = host
        self.port = port
        self.max_pixels = max_pixels
        self.curve = curve
        self.engine = Engine(device=device, precision=precision, vram_budget=vram_budget)
        self.key = connection.new_key()
        self.key_bytes = self.key.encode()
        self.replay = protocol.ReplayGuard()
        self.dropped: Counter[str] = Counter()
        self.jobs: dict[str, Job] = {}
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.current: Job | None = None
        self.completed = 0
        self.started = time.time()
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        self._lock_fd: int | None = None
        self._state_lock = threading.Lock()

    # ---- life cycle -------------------------------------------------------------------------------------------
    def _take_lock(self) -> None:
        """One daemon per runtime dir: hold an exclusive lock for our whole life."""
        if os.name != "posix":
            return
        import fcntl

        fd = os.open(connection.runtime_dir() / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            info = connection.read_connection_file()
            pid = info["pid"] if info else "unknown"
            raise AlreadyRunning(f"a Retouch daemon is already running (pid {pid})") from None
        self._lock_fd = fd

    def serve_forever(self) -> None:
        self._take_lock()
        ctx = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a vanished client fails: we cancel its jobs
        # an oversized frame disconnects its sender before we buffer it: f32 RGBA of max_pixels, plus slack
        router.setsockopt(zmq.MAXMSGSIZE, self.max_pixels * 16 + (1 << 20))
        authenticator = None
        if self.curve is not None:
            authenticator = self.curve.start(ctx, router)
        if self.port:
            router.bind(f"tcp://{self.host}:{self.port}")
        else:  # bind first, then publish the port: no race between picking and binding (jupyter_client#487)
            self.port = router.bind_to_random_port(f"tcp://{self.host}")
        outbox = ctx.socket(zmq.PULL)
        outbox.bind(OUTBOX)
        worker = threading.Thread(target=self._worker, args=(ctx,), name="retouch-worker", daemon=True)
        worker.start()
        info: connection.ConnectionInfo = {
            "transport": "tcp",
            "host": self.host,
            "port": self.port,
            "key": self.key,
            "pid": os.getpid(),
            "version": protocol.PROTOCOL_VERSION,
        }
        if self.curve is not None:
            info["curve_serverkey"] = self.curve.server_public.decode()
        path = connection.write_connection_file(info)
        log.info("listening on %s:%d (device %s), connection file %s", self.host, self.port,
                 self.engine.device_name, path)
        self._install_signal_handlers()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(outbox, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(200))
                if outbox in events:
                    self._forward(router, outbox)
                if router in events:
                    for _ in range(MAX_BATCH):  # bounded, so a flood cannot keep us from seeing a stop request
                        try:
                            frames = router.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._handle(router, frames)
        finally:
            connection.remove_connection_file(os.getpid(), path)
            # the running job stops at its next tile; its "cancelled" error still reaches its client
            for job in list(self.jobs.values()):
                job.cancel.set()
            self.queue.put(None)
            worker.join(timeout=30)
            self._forward(router, outbox)
            for job in list(self.jobs.values()):  # queued jobs never started: tell their clients
                self._error(router, job.identity, job.parent, Cancelled("the daemon is shutting down"),
                            job_id=job.job_id)
            router.close(linger=500)
            outbox.close(0)
            if authenticator is not None:
                authenticator.stop()
            ctx.term()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
            log.info("stopped")

    def stop(self) -> None:
        self._stop.set()

    def _forward(self, router: zmq.Socket, outbox: zmq.Socket) -> None:
        """Replies the worker produced -> their clients. A client that is gone gets its jobs cancelled."""
        while True:
            try:
                frames = outbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._route(router, frames[0].bytes, frames, copy=False)

    def _route(self, router: zmq.Socket, identity: bytes, frames: list, copy: bool = True) -> None:
        """Send without ever blocking the main thread: a client that does not read loses its own replies only."""
        try:
            router.send_multipart(frames, flags=zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            self.dropped["slow_client"] += 1
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self._client_gone(identity, exc)
            else:
                log.warning("reply to a client failed: %s", exc)

    def _client_gone(self, identity: bytes, exc: zmq.ZMQError) -> None:
        self.dropped["client_gone"] += 1
        for job in list(self.jobs.values()):
            if job.identity == identity and not job.cancel.is_set():
                log.info("client of %s is gone (%s): cancelling the job", job.job_id, exc.strerror)
                self._cancel(job)

    def _cancel(self, job: Job) -> bool:
        """Stop `job`; True when it had not started (then it is gone at once and its client must be told)."""
        job.cancel.set()
        with self._state_lock:
            was_queued = job.state == "queued"
            if was_queued:
                job.state = "done"
        if was_queued:
            self.jobs.pop(job.job_id, None)
        return was_queued

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    # ---- main thread: receive, authenticate, validate ---------------------------------------------------------
    def _send(self, sock: zmq.Socket, identity: bytes, header: dict[str, Any], buffers: list[bytes] = ()) -> None:
        self._route(sock, identity, [identity, *protocol.encode(self.key_bytes, header, buffers)])

    def _error(self, sock: zmq.Socket, identity: bytes, parent: dict | None, err: RetouchError, **extra: Any) -> None:
        self._send(sock, identity, protocol.reply_header(parent, "error", error=err.to_wire(), **extra))

    def _handle(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        identity, rest = frames[0], frames[1:]
        try:
            msg = protocol.decode(self.key_bytes, rest, self.replay)
        except AuthError as exc:
            self.dropped["replayed" if isinstance(exc, Replayed) else "bad_signature"] += 1
            log.warning("dropped a message: %s", exc.message)
            return
        except (ProtocolMismatch, BadRequest) as exc:
            if getattr(exc, "authenticated", False):  # signed by a genuine client: tell it what is wrong
                self._error(sock, identity, getattr(exc, "header", None), exc)
                return
            # frame-level garbage: not authenticated, so not answered
            self.dropped["malformed"] += 1
            log.warning("dropped a message: %s", exc.message)
            return
        except Exception:  # whatever a message holds, the daemon goes on
            self.dropped["malformed"] += 1
            log.exception("dropped a message that broke the decoder")
            return
        try:
            self._dispatch(sock, identity, msg)
        except RetouchError as exc:
            job_id = msg.header.get("job_id")
            short_id = job_id if isinstance(job_id, str) and len(job_id) <= protocol.MAX_ID_LENGTH else None
            self._error(sock, identity, msg.header, exc, job_id=short_id)
        except Exception as exc:  # the daemon never dies of a request
            log.exception("request %s failed", msg.type)
            self._error(sock, identity, msg.header, RetouchError(f"internal error: {type(exc).__name__}: {exc}"))

    def _reply(self, sock: zmq.Socket, identity: bytes, parent: dict, payload: dict[str, Any]) -> None:
        self._send(sock, identity, protocol.reply_header(parent, "reply", payload=payload))

    def _dispatch(self, sock: zmq.Socket, identity: bytes, msg: protocol.Message) -> None:
        h = msg.header
        kind = msg.type
        if kind == "ping":
            self._reply(sock, identity, h, {"pong": True, "pid": os.getpid(), "version": protocol.PROTOCOL_VERSION})
        elif kind == "status":
            self._reply(sock, identity, h, self.status())
        elif kind == "models":
            loaded = set(self.engine.loaded())
            models = [dict(s.to_wire(), loaded=str(s.path) in loaded) for s in list_models()]
            self._reply(sock, identity, h, {"models": models})
        elif kind == "tasks":
            self._reply(sock, identity, h, {"tasks": [t.describe() for t in TASKS.values()]})
        elif kind in ("enhance", "preview"):
            job = self._make_job(identity, msg)
            self.jobs[job.job_id] = job
            self.queue.put(job)
            position = self._queued()
            self._send(sock, identity, protocol.reply_header(h, "accepted", job_id=job.job_id, position=position))
        elif kind == "cancel":
            job = self.jobs.get(str(h.get("job_id")))
            if job is None:
                raise BadRequest(f"no job {shown(h.get('job_id'))} is queued or running")
            if self._cancel(job):
                err = Cancelled("job cancelled before it started")
                self._error(sock, job.identity, job.parent, err, job_id=job.job_id)
            self._reply(sock, identity, h, {"cancelled": True, "job_id": job.job_id})
        elif kind == "shutdown":
            self._reply(sock, identity, h, {"stopping": True})
            self.stop()
        else:
            raise BadRequest(f"unknown request type {shown(kind)}; known: {', '.join(protocol.REQUEST_TYPES)}")

    def _make_job(self, identity: bytes, msg: protocol.Message) -> Job:
        h = msg.header
        task = get_task(h.get("task"))
        params = task.parse_params(h.get("params"))
        model = h.get("model")
        if model is not None and not isinstance(model, str):
            raise BadRequest("'model' must be a model name or a path")
        tile = h.get("tile")
        if tile is not None and (not isinstance(tile, int) or isinstance(tile, bool) or not 32 <= tile <= 8192):
            raise BadRequest(f"'tile' must be an integer from 32 to 8192, got {shown(tile)}")
        device = h.get("device")
        if device not in (None, "cpu", "cuda"):
            raise BadRequest(f"'device' must be 'cpu' or 'cuda', got {shown(device)}")
        if device is not None:
            try:
                pick_device(device)
            except RuntimeError as exc:
                raise BadRequest(str(exc)) from None
        if "image" not in h:
            raise BadRequest("an enhance request needs an 'image' description")
        spec = ImageSpec.from_header(h["image"])
        if spec.width * spec.height > self.max_pixels:
            raise BadRequest(
                f"image is {spec.width}x{spec.height} = {megapixels(spec.width * spec.height)} MP; this daemon "
                f"accepts at most {megapixels(self.max_pixels)} MP per job (retouch serve --max-megapixels)"
            )
        has_mask = bool(h.get("mask"))
        want = 2 if has_mask else 1
        if len(msg.buffers) != want:
            raise BadRequest(f"expected {want} pixel frame(s) (image{', mask' if has_mask else ''}), "
                             f"got {len(msg.buffers)}")
        spec.check_frame(msg.buffers[0])
        mask_frame = None
        if has_mask:
            mask_spec(spec.width, spec.height).check_frame(msg.buffers[1], "mask")
            mask_frame = msg.buffers[1]
        job_id = f"job-{next(self._ids)}-{protocol.new_id()[:8]}"
        return Job(job_id, identity, h, task.name, params, model, tile, device, spec, msg.buffers[0], mask_frame)

    def _queued(self) -> int:
        return sum(1 for j in list(self.jobs.values()) if j.state == "queued")

    def status(self) -> dict[str, Any]:
        cur = self.current
        return {
            "pid": os.getpid(),
            "version": protocol.PROTOCOL_VERSION,
            "host": self.host,
            "port": self.port,
            "device": self.engine.device_name,
            "precision": self.engine.precision,
            "uptime": round(time.time() - self.started, 1),
            "queued": self._queued(),
            "running": None if cur is None else {"job_id": cur.job_id, "task": cur.task,
                                                 "fraction": cur.fraction, "stage": cur.stage},
            "completed": self.completed,
            "loaded_models": self.engine.loaded(),
            "model_loads": self.engine.loads,
            "dropped": dict(self.dropped),
            "max_pixels": self.max_pixels,
            "curve": self.curve is not None,
        }

    # ---- worker thread ----------------------------------------------------------------------------------------
    def _worker(self, ctx: zmq.Context) -> None:
        push = ctx.socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(OUTBOX)
        try:
            while True:
                job = self.queue.get()
                if job is None:
                    return
                with self._state_lock:
                    if job.state != "queued":  # cancelled while waiting
                        continue
                    job.state = "running"
                self._run_job(push, job)
        finally:
            push.close()

    def _push(self, push: zmq.Socket, job: Job, header: dict[str, Any], buffers: list[bytes] = ()) -> None:
        push.send_multipart([job.identity, *protocol.encode(self.key_bytes, header, buffers)], copy=False)

    def _run_job(self, push: zmq.Socket, job: Job) -> None:
        self.current = job
        last_sent = [0.0]

        def progress(fraction: float, stage: str) -> None:
            job.fraction, job.stage = round(fraction, 4), stage
            now = time.monotonic()
            if now - last_sent[0] >= PROGRESS_INTERVAL or fraction >= 1.0:
                last_sent[0] = now
                self._push(push, job, protocol.reply_header(job.parent, "progress", job_id=job.job_id,
                                                            fraction=job.fraction, stage=stage))

        def check_cancel() -> None:
            if self._stop.is_set():
                raise Cancelled("the daemon is shutting down")
            if job.cancel.is_set():
                raise Cancelled("job cancelled")

        try:
            out_spec, out_frame, info, review = process_frame(
                self.engine, job.task, job.spec, job.frame, job.params, mask_frame=job.mask_frame, model=job.model,
                tile=job.tile, device=job.device, progress=progress, check_cancel=check_cancel)
            header = protocol.reply_header(job.parent, "result", job_id=job.job_id, image=out_spec.to_header(),
                                           info=info)
            self.completed += 1
            self._push(push, job, header, [out_frame] if review is None else [out_frame, review])
        except RetouchError as exc:
            self._push(push, job, protocol.reply_header(job.parent, "error", job_id=job.job_id, error=exc.to_wire()))
        except Exception as exc:
            log.exception("job %s failed", job.job_id)
            err = RetouchError(f"job failed: {type(exc).__name__}: {exc}")
            self._push(push, job, protocol.reply_header(job.parent, "error", job_id=job.job_id, error=err.to_wire()))
        finally:
            job.state = "done"
            job.frame = b""
            self.current = None
            self.jobs.pop(job.job_id, None)


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    device: str = "auto",
    precision: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    curve: CurveKeys | None = None,
    vram_budget: int = DEFAULT_VRAM_BUDGET,
) -> None:
    if not connection.is_loopback(host) and curve is None:
        raise InsecureListen(
            f"refusing to listen on {host}: a non-loopback address needs ZeroMQ CURVE encryption "
            "(create keys with `retouch keys`, then `retouch serve --listen ADDR --curve`)"
        )
    with contextlib.suppress(KeyboardInterrupt):
        Daemon(host, port, device, precision, max_pixels, curve, vram_budget).serve_forever()
