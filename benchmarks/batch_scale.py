"""Throughput of `retouch batch` through the local daemon vs on Ray with 1 and 2 workers, measured in one run.

    python benchmarks/batch_scale.py [--files 12] [--size 384] [--scale 2] [--threads-per-worker 1]

Prints files/s for each and the ratios to the local batch. Needs `pip install -e '.[cluster]'`. Each run writes to a
fresh folder; Ray's start-up (~5-10 s) is part of what a user waits for, so it is counted, and also shown apart.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "heldout"


def run(cmd: list[str]) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--size", type=int, default=384, help="input side in pixels")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--threads-per-worker", type=int, default=1)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="retouch-batch-bench-"))
    os.environ["RETOUCH_RUNTIME_DIR"] = str(work / "run")
    (work / "run").mkdir(mode=0o700)
    inputs = work / "in"
    inputs.mkdir()
    crops = sorted(DATA.glob("*.png"))
    for i in range(args.files):
        img = Image.open(crops[i % len(crops)]).convert("RGB").resize((args.size, args.size), Image.Resampling.LANCZOS)
        img.save(inputs / f"img-{i:03d}.png")
    retouch = [sys.executable, "-m", "retouch"]
    try:
        subprocess.run([*retouch, "status"], capture_output=True, check=False)
        run([*retouch, "batch", str(inputs), "-o", str(work / "warm"), "--scale", str(args.scale), "-q"])  # daemon up
        shutil.rmtree(work / "warm")
        t_local, _ = run([*retouch, "batch", str(inputs), "-o", str(work / "local"), "--scale", str(args.scale),
                          "--json"])
        results = {"local daemon": (t_local, None)}
        for workers in (1, 2):
            t, summary = run([*retouch, "batch", str(inputs), "-o", str(work / f"ray{workers}"), "--scale",
                              str(args.scale), "--ray", "--workers", str(workers), "--threads-per-worker",
                              str(args.threads_per_worker), "--json"])
            results[f"ray {workers} worker{'s' if workers > 1 else ''}"] = (t, summary["seconds"])
    finally:
        subprocess.run([*retouch, "stop"], capture_output=True, check=False)
    cpus = os.cpu_count()
    print(f"{args.files} files of {args.size}x{args.size}, upscale x{args.scale}, {cpus} CPUs, "
          f"{args.threads_per_worker} thread(s) per Ray worker")
    print(f"{'':18} {'wall s':>8} {'files/s':>8} {'vs local':>9} {'in Ray s':>9} {'files/s':>8}")
    for name, (t, inside) in results.items():
        rate = args.files / t
        extra = f"{inside:9.1f} {args.files / inside:8.2f}" if inside else ""
        print(f"{name:18} {t:8.1f} {rate:8.2f} {t_local / t:8.2f}x {extra}")
    same = all(np.array_equal(np.asarray(Image.open(work / "local" / p.name)),
                              np.asarray(Image.open(work / d / p.name)))
               for p in inputs.iterdir() for d in ("ray1", "ray2"))
    print(f"outputs identical to the local batch: {same}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
