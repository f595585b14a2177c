"""What the daemon and the CLI cost on top of the engine, measured side by side in one run.

The same upscale job (default: a 4 MP photo, x2) runs
  1. in-process: pixels in memory -> decode -> upscale task -> encode (what the daemon's worker does),
  2. through a real daemon on loopback with the client library (adds signing, transport, queueing),
  3. through the `retouch enhance` CLI, file to file, against the in-process file-to-file equivalent.
The model is warm in every case. Prints seconds, the ratios (goal <= 1.05x) and seconds per output megapixel.

    python benchmarks/overhead.py [--megapixels 4] [--scale 2] [--repeat 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "daemon" / "retouch" / "samples" / "boats.png"


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megapixels", type=float, default=4.0, help="input size")
    parser.add_argument("--scale", type=int, default=2, choices=(2, 4))
    parser.add_argument("--repeat", type=int, default=2, help="runs per path; the fastest counts")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    runtime = Path(tempfile.mkdtemp(prefix="retouch-bench-"))
    os.environ["RETOUCH_RUNTIME_DIR"] = str(runtime)
    from retouch import connection
    from retouch.client import Client
    from retouch.engine import Engine
    from retouch.imageio import read_image, write_image
    from retouch.pipeline import run_pipeline
    from retouch.pixels import decode_image, encode_image, spec_for_array
    from retouch.tasks import TaskContext, get_task

    side = int((args.megapixels * 1e6) ** 0.5)
    img = np.asarray(Image.open(SAMPLE).convert("RGB").resize((side, side), Image.Resampling.BICUBIC))
    spec = spec_for_array(img)
    frame = img.tobytes()
    in_png, out_png, out_cli = runtime / "in.png", runtime / "out-inproc.png", runtime / "out-cli.png"
    write_image(in_png, img)
    out_mp = side * side * args.scale**2 / 1e6
    print(f"input {side}x{side} ({side * side / 1e6:.1f} MP), x{args.scale} -> {out_mp:.1f} MP out, "
          f"device {args.device}, best of {args.repeat}")

    engine = Engine(device=args.device)
    task = get_task("upscale")
    params = task.parse_params({"scale": args.scale})
    ctx = TaskContext(engine, lambda f, s: None, lambda: None)

    def in_process() -> None:
        result = run_pipeline(task, ctx, decode_image(spec, frame), None, params)
        encode_image(result.image, spec)

    def in_process_files() -> None:
        loaded = read_image(in_png)
        s = spec_for_array(loaded.pixels)
        result = run_pipeline(task, ctx, decode_image(s, loaded.pixels.tobytes()), None, params)
        out_spec, out = encode_image(result.image, s)
        write_image(out_png, np.frombuffer(out, np.uint8).reshape(out_spec.height, out_spec.width, 3))

    in_process()  # warm: load the model
    t_engine = best_of(args.repeat, in_process)
    t_engine_files = best_of(args.repeat, in_process_files)

    daemon = subprocess.Popen([sys.executable, "-m", "retouch", "serve", "--device", args.device],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while connection.live_connection() is None:
            time.sleep(0.05)
        client = Client(autostart=False, timeout=60)
        client.enhance("upscale", frame, spec, params=params)  # warm the daemon's model
        t_daemon = best_of(args.repeat, lambda: client.enhance("upscale", frame, spec, params=params))
        cli = [sys.executable, "-m", "retouch", "enhance", str(in_png), "-o", str(out_cli), "--scale",
               str(args.scale), "-q"]
        t_cli = best_of(args.repeat, lambda: subprocess.run(cli, check=True))
        client.shutdown()
    finally:
        daemon.terminate()
        daemon.wait()

    print(f"in-process engine          {t_engine:8.2f} s   {t_engine / out_mp:6.3f} s per output MP")
    print(f"through the daemon         {t_daemon:8.2f} s   ratio {t_daemon / t_engine:5.3f}x  (goal <= 1.05x)")
    print(f"in-process, file to file   {t_engine_files:8.2f} s")
    print(f"retouch enhance (CLI)      {t_cli:8.2f} s   ratio {t_cli / t_engine_files:5.3f}x  (goal <= 1.05x)")


if __name__ == "__main__":
    main()
