"""Soak test: several clients hammer one daemon with many small jobs; every result is checked pixel for pixel.

    python benchmarks/soak.py [--clients 3] [--jobs 200] [--seed 1] [--daemon-threads N]

Starts its own daemon (`python -m retouch serve --device cpu`, RETOUCH_RUNTIME_DIR set to a temporary folder), then
N client threads, each with its own `Client(autostart=False)`, each running M `upscale` jobs one after the other:
scale 2 or 4, u8/u16/f32, RGBA/RGB/GRAY/BGRA, 8..40 px on a side, sometimes a padded stride, sometimes a
selection mask, content random (seeded per job).

The expected output of every job is computed in this process with the code the daemon's worker runs
(`Engine(device="cpu")`, the `upscale` task, `decode_image` / `encode_image`), so a result must be byte-identical
(CPU fp32 inference gives the same bits with any thread count; checked, not assumed: a difference is reported
as `wrong` with its size).

Counted: lost (no result: an error, a timeout, or the client's socket broke), duplicated (a second result or error
for a job already answered), misrouted (a message for another request on a job's socket, a result whose job_id is
not the job's, or pixels that equal another job's expected output), wrong (pixels or spec differ from the expected
ones). Printed with the p50/p99 latency (submit to result) and the daemon's resident memory (VmRSS) before the run
(after one warm-up job per model) and after it. Exits 1 if anything was lost, duplicated, misrouted or wrong.

`run_soak(clients, jobs, runtime_dir)` is the same thing as a function (tests/test_soak.py uses it).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DTYPES = ("u8", "u16", "f32")
ORDERS = ("RGBA", "RGB", "GRAY", "BGRA")
JOB_TIMEOUT = 120.0  # seconds from submit to result before a job counts as lost
KEEP_OPEN = 4  # finished jobs whose sockets stay open a while, to catch a late duplicate


@dataclass
class SoakJob:
    index: int
    client: int
    scale: int
    spec: Any  # ImageSpec
    pixels: bytes
    mask: bytes | None
    expected_spec: Any = None
    expected: bytes = b""
    digest: str = ""


@dataclass
class Outcome:
    index: int
    latency: float | None = None
    spec: Any = None
    pixels: bytes | None = None
    job_id: str = ""
    accepted_id: str = ""
    error: str | None = None


@dataclass
class ClientLog:
    outcomes: list[Outcome] = field(default_factory=list)
    duplicated: int = 0
    misrouted: int = 0
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(text)


# ---- jobs and their expected outputs --------------------------------------------------------------------------------
def make_job(index: int, client: int, seed: int) -> SoakJob:
    from retouch.protocol import ImageSpec

    rng = np.random.default_rng([seed, index])
    w, h = (int(v) for v in rng.integers(8, 41, size=2))
    dtype = DTYPES[int(rng.integers(len(DTYPES)))]
    order = ORDERS[int(rng.integers(len(ORDERS)))]
    scale = int(rng.choice([2, 4]))
    channels = {"RGBA": 4, "BGRA": 4, "RGB": 3, "GRAY": 1}[order]
    if dtype == "u8":
        arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    elif dtype == "u16":
        arr = rng.integers(0, 65536, (h, w, channels), dtype=np.uint16).astype("<u2")
    else:
        arr = rng.random((h, w, channels), dtype=np.float32).astype("<f4")
    if rng.random() < 0.3:  # a smooth picture instead of noise now and then
        y, x = np.mgrid[0:h, 0:w]
        smooth = (0.5 + 0.5 * np.sin(x / 3.0 + index) * np.cos(y / 4.0))[:, :, None].repeat(channels, axis=2)
        top = {"u8": 255, "u16": 65535}.get(dtype)
        arr = np.rint(smooth * top).astype(arr.dtype) if top else smooth.astype("<f4")
    row = w * channels * arr.itemsize
    stride = 0
    pixels = arr.tobytes()
    if rng.random() < 0.15:  # rows padded, as editors hand them over
        stride = row + int(rng.integers(1, 17))
        padded = np.zeros((h, stride), np.uint8)
        padded[:, :row] = np.frombuffer(pixels, np.uint8).reshape(h, row)
        pixels = padded.tobytes()
    spec = ImageSpec(w, h, dtype, order, "srgb", stride)
    mask = None
    if rng.random() < 0.25:
        kind = int(rng.integers(3))
        if kind == 0:
            m = rng.integers(0, 256, (h, w), dtype=np.uint8)
        elif kind == 1:
            m = np.zeros((h, w), np.uint8)
            m[: h // 2, w // 3 :] = 255
        else:
            m = np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))
        mask = m.tobytes()
    return SoakJob(index, client, scale, spec, pixels, mask)


def compute_expected(jobs: list[SoakJob], threads: int | None = 1) -> None:
    """The daemon worker's code path, in this process, on the CPU."""
    import torch
    from retouch.engine import Engine
    from retouch.pipeline import run_pipeline
    from retouch.pixels import decode_image, decode_mask, encode_image
    from retouch.protocol import mask_spec
    from retouch.tasks import TaskContext, get_task

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # a busy machine: one thread is much faster than two fighting for a core
    try:
        engine = Engine(device="cpu")
        task = get_task("upscale")
        for job in jobs:
            ctx = TaskContext(engine, lambda fraction, stage: None, lambda: None)
            params = task.parse_params({"scale": job.scale})
            mask = None
            if job.mask is not None:
                mask = decode_mask(mask_spec(job.spec.width, job.spec.height), job.mask)
            result = run_pipeline(task, ctx, decode_image(job.spec, job.pixels), mask, params)
            job.expected_spec, job.expected = encode_image(result.image, job.spec)
            job.digest = hashlib.sha256(job.expected).hexdigest()
    finally:
        torch.set_num_threads(before)


# ---- the daemon ---------------------------------------------------------------------------------------------------
def start_daemon(runtime_dir: Path, threads: int | None = None) -> subprocess.Popen:
    runtime_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(runtime_dir, 0o700)
    env = dict(os.environ, RETOUCH_RUNTIME_DIR=str(runtime_dir))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log = open(runtime_dir / "soak-daemon.log", "ab")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([sys.executable, "-m", "retouch", "serve", "--device", "cpu"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    log.close()
    return proc


def wait_for_daemon(proc: subprocess.Popen, runtime_dir: Path, timeout: float = 120.0) -> Path:
    from retouch import connection

    path = runtime_dir / "daemon.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = connection.read_connection_file(path)
        if info is not None and info["pid"] == proc.pid:
            return path
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited: {(runtime_dir / 'soak-daemon.log').read_text()[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"the daemon wrote no connection file within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- clients ------------------------------------------------------------------------------------------------------
def run_client(ci: int, jobs: list[SoakJob], path: Path, log: ClientLog) -> None:
    from retouch import protocol
    from retouch.client import Client
    from retouch.errors import RetouchError
    from retouch.protocol import ImageSpec

    client = Client(autostart=False, timeout=60, path=path)
    recent: deque[Any] = deque()

    def leftovers(job: Any, wait_ms: int) -> None:
        """Anything that reaches a finished job's socket is a duplicate (its own request) or misrouted."""
        try:
            while job.sock.poll(wait_ms):
                wait_ms = 0
                msg = protocol.decode(job.key, job.sock.recv_multipart())
                if msg.header.get("parent_id") != job.msg_id:
                    log.misrouted += 1
                    log.note(f"client {ci}: stray {msg.type} for {msg.header.get('parent_id')} on {job.msg_id}")
                elif msg.type in ("result", "error", "accepted"):
                    log.duplicated += 1
                    log.note(f"client {ci}: second {msg.type} for {job.job_id}")
                else:
                    log.note(f"client {ci}: {msg.type} after the result of {job.job_id}")
        except (RetouchError, OSError) as exc:
            log.note(f"client {ci}: reading leftovers of {job.job_id}: {exc}")
        finally:
            job.close()

    for soak_job in jobs:
        out = Outcome(soak_job.index)
        log.outcomes.append(out)
        started = time.perf_counter()
        try:
            job = client.submit("upscale", soak_job.pixels, soak_job.spec, params={"scale": soak_job.scale},
                                mask=soak_job.mask)
        except RetouchError as exc:
            out.error = f"submit: {exc.code}: {exc.message}"
            continue
        out.accepted_id = job.job_id
        deadline = time.monotonic() + JOB_TIMEOUT
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not job.sock.poll(int(remaining * 1000)):
                    out.error = f"timeout: no result within {JOB_TIMEOUT:.0f} s"
                    break
                msg = protocol.decode(job.key, job.sock.recv_multipart())
                h = msg.header
                if h.get("parent_id") != job.msg_id:
                    log.misrouted += 1
                    log.note(f"client {ci}: {msg.type} for {h.get('parent_id')} reached job {soak_job.index}")
                    continue
                if msg.type == "progress":
                    continue
                if msg.type == "result":
                    out.latency = time.perf_counter() - started
                    out.job_id = str(h.get("job_id"))
                    out.spec = ImageSpec.from_header(h["image"])
                    out.pixels = msg.buffers[0] if msg.buffers else b""
                    break
                if msg.type == "error":
                    err = h.get("error", {})
                    out.error = f"{err.get('code')}: {err.get('message')}"
                    break
                log.note(f"client {ci}: unexpected {msg.type} for job {soak_job.index}")
        except (RetouchError, OSError) as exc:
            out.error = f"{type(exc).__name__}: {exc}"
        job.done = True
        recent.append(job)
        if len(recent) > KEEP_OPEN:
            leftovers(recent.popleft(), 0)
    for i, job in enumerate(recent):
        leftovers(job, 300 if i == 0 else 0)


# ---- the run ------------------------------------------------------------------------------------------------------
def run_soak(
    clients: int = 3,
    jobs: int = 200,
    runtime_dir: Path | str | None = None,
    seed: int = 1,
    daemon_threads: int | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """Run the soak against a daemon of its own in `runtime_dir` (a new temporary folder if None)."""
    from retouch.client import Client

    runtime = Path(runtime_dir) if runtime_dir is not None else Path(tempfile.mkdtemp(prefix="retouch-soak-"))
    say = print if verbose else (lambda *a, **k: None)
    t_start = time.monotonic()
    proc = start_daemon(runtime, daemon_threads)
    try:
        all_jobs = [make_job(c * jobs + j, c, seed) for c in range(clients) for j in range(jobs)]
        t0 = time.monotonic()
        compute_expected(all_jobs)  # while the daemon starts
        expected_seconds = time.monotonic() - t0
        by_digest: dict[str, list[int]] = {}
        for job in all_jobs:
            by_digest.setdefault(job.digest, []).append(job.index)
        path = wait_for_daemon(proc, runtime)
        rss_cold = rss_kb(proc.pid)
        warm = Client(autostart=False, timeout=60, path=path)
        for scale in (2, 4):  # load both models before the "before" figure
            warm_job = make_job(10**6 + scale, -1, seed)
            warm.enhance("upscale", warm_job.pixels, warm_job.spec, params={"scale": scale})
        rss_before = rss_kb(proc.pid)
        say(f"soak: {clients} clients x {jobs} jobs; expected outputs computed in {expected_seconds:.1f} s; "
            f"daemon pid {proc.pid}, RSS {rss_cold / 1024:.1f} MiB cold, {rss_before / 1024:.1f} MiB warm")

        logs = [ClientLog() for _ in range(clients)]
        threads = [
            threading.Thread(target=run_client, args=(c, all_jobs[c * jobs : (c + 1) * jobs], path, logs[c]),
                             name=f"soak-client-{c}", daemon=True)
            for c in range(clients)
        ]
        t_run = time.monotonic()
        samples: list[tuple[float, int]] = []  # (seconds into the run, daemon RSS kB): does it level off?
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.5):
                with contextlib.suppress(OSError, ValueError):
                    samples.append((time.monotonic() - t_run, rss_kb(proc.pid)))

        sampler = threading.Thread(target=sample, name="soak-rss", daemon=True)
        sampler.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        run_seconds = time.monotonic() - t_run
        done.set()
        sampler.join()
        alive = proc.poll() is None
        rss_after = rss_kb(proc.pid) if alive else 0
        status = warm.status() if alive else {}
    finally:
        with contextlib.suppress(Exception):
            if proc.poll() is None:
                Client(autostart=False, timeout=10, path=runtime / "daemon.json").request("shutdown")
                proc.wait(20)
        stop(proc)

    lost = misrouted_content = wrong = 0
    errors: Counter[str] = Counter()
    worst_diff = 0.0
    notes: list[str] = []
    latencies: list[float] = []
    seen_job_ids: Counter[str] = Counter()
    for log in logs:
        notes.extend(log.notes)
        for out in log.outcomes:
            job = all_jobs[out.index]
            if out.pixels is None:
                lost += 1
                errors[(out.error or "no result").split(":")[0]] += 1
                if len(notes) < 40:
                    notes.append(f"job {out.index} lost: {out.error}")
                continue
            latencies.append(out.latency or 0.0)
            seen_job_ids[out.job_id] += 1
            if out.job_id != out.accepted_id:
                misrouted_content += 1
                notes.append(f"job {out.index}: result for {out.job_id}, accepted as {out.accepted_id}")
                continue
            digest = hashlib.sha256(out.pixels).hexdigest()
            if out.spec == job.expected_spec and digest == job.digest:
                continue
            others = [i for i in by_digest.get(digest, []) if i != out.index]
            if others and job.index not in by_digest.get(digest, []):
                misrouted_content += 1
                notes.append(f"job {out.index}: got the pixels of job {others[0]}")
                continue
            wrong += 1
            diff = pixel_difference(job, out)
            worst_diff = max(worst_diff, diff)
            if len(notes) < 40:
                notes.append(f"job {out.index} wrong ({job.spec.width}x{job.spec.height} {job.spec.dtype} "
                             f"{job.spec.order} x{job.scale} mask={job.mask is not None}): spec {out.spec} vs "
                             f"{job.expected_spec}, max abs difference {diff}")
    duplicated = sum(log.duplicated for log in logs) + sum(n - 1 for n in seen_job_ids.values() if n > 1)
    misrouted = sum(log.misrouted for log in logs) + misrouted_content
    lat_ms = np.array(latencies) * 1000 if latencies else np.array([float("nan")])
    growth = (rss_after - rss_before) / rss_before * 100 if rss_before and rss_after else float("nan")
    result = {
        "clients": clients,
        "jobs": clients * jobs,
        "completed": len(latencies),
        "lost": lost,
        "duplicated": duplicated,
        "misrouted": misrouted,
        "wrong": wrong,
        "errors": dict(errors),
        "worst_abs_diff": worst_diff,
        "p50_ms": float(np.percentile(lat_ms, 50)),
        "p99_ms": float(np.percentile(lat_ms, 99)),
        "max_ms": float(lat_ms.max()),
        "run_seconds": run_seconds,
        "expected_seconds": expected_seconds,
        "total_seconds": time.monotonic() - t_start,
        "throughput_jobs_per_s": len(latencies) / run_seconds if run_seconds else 0.0,
        "rss_cold_kb": rss_cold,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "rss_growth_pct": growth,
        "rss_quartiles_kb": [rss_at(samples, run_seconds * q) for q in (0.25, 0.5, 0.75, 1.0)],
        "daemon_alive": alive,
        "daemon_completed": status.get("completed"),
        "daemon_dropped": status.get("dropped"),
        "notes": notes,
    }
    say(format_result(result))
    for note in notes[:40]:
        say(f"  {note}")
    return result


def rss_at(samples: list[tuple[float, int]], when: float) -> int:
    """The last RSS sample taken at or before `when` seconds into the run (0 without samples)."""
    before = [kb for t, kb in samples if t <= when]
    return before[-1] if before else (samples[0][1] if samples else 0)


def pixel_difference(job: SoakJob, out: Outcome) -> float:
    from retouch.pixels import frame_to_array

    if out.spec != job.expected_spec or out.pixels is None:
        return float("inf")
    a = frame_to_array(out.spec, out.pixels).astype(np.float64)
    b = frame_to_array(job.expected_spec, job.expected).astype(np.float64)
    return float(np.abs(a - b).max())


def format_result(r: dict[str, Any]) -> str:
    mib = {k: r[k] / 1024 for k in ("rss_cold_kb", "rss_before_kb", "rss_after_kb")}
    return (
        f"soak: jobs={r['jobs']} completed={r['completed']} lost={r['lost']} duplicated={r['duplicated']} "
        f"misrouted={r['misrouted']} wrong={r['wrong']} errors={r['errors']} | latency p50={r['p50_ms']:.0f} ms "
        f"p99={r['p99_ms']:.0f} ms max={r['max_ms']:.0f} ms | {r['throughput_jobs_per_s']:.1f} jobs/s, run "
        f"{r['run_seconds']:.1f} s, total {r['total_seconds']:.1f} s | daemon RSS before={mib['rss_before_kb']:.1f} "
        f"MiB after={mib['rss_after_kb']:.1f} MiB growth={r['rss_growth_pct']:+.1f}% (cold {mib['rss_cold_kb']:.1f} "
        f"MiB; at 25/50/75/100% of the run {'/'.join(f'{kb / 1024:.0f}' for kb in r['rss_quartiles_kb'])} MiB) | "
        f"daemon completed={r['daemon_completed']} dropped={r['daemon_dropped']}"
    )


def failed(r: dict[str, Any]) -> bool:
    return bool(r["lost"] or r["duplicated"] or r["misrouted"] or r["wrong"] or not r["daemon_alive"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=3, help="concurrent client threads")
    parser.add_argument("--jobs", type=int, default=200, help="jobs per client")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--daemon-threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the daemon (default: torch's own choice)")
    parser.add_argument("--runtime-dir", type=Path, default=None, help="default: a new temporary folder")
    args = parser.parse_args()
    r = run_soak(args.clients, args.jobs, args.runtime_dir, args.seed, args.daemon_threads)
    return 1 if failed(r) else 0


if __name__ == "__main__":
    sys.exit(main())
