"""`retouch batch IN -o OUT --ray [ADDRESS]`: the same file jobs on a Ray cluster (Ray Data + an actor pool).

Each actor holds an in-process engine (models loaded once per actor, on the CPU or a GPU share the cluster gives
it) and runs exactly the daemon's job code (`jobs.process_frame`), so outputs equal `retouch batch` pixel for
pixel. Outputs are written atomically by the actors; every finished file is appended to a manifest in the output
folder, so a killed run resumes where it stopped. Per-file errors go to a report instead of stopping the run.
Ray is optional (`pip install 'retouch[cluster]'`); nothing else in Retouch imports it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RetouchError
from .filejob import BatchPlan, enhance_file

MANIFEST = ".retouch-batch-manifest.jsonl"
REPORT = "retouch-batch-report.json"


class EnhanceActor:
    """One Ray actor: an engine kept hot across the files it is given."""

    def __init__(self, task: str, params: dict[str, Any], model: str | None, tile: int | None,
                 device: str | None, threads: int) -> None:
        import torch

        from .engine import Engine
        from .tasks import get_task

        torch.set_num_threads(threads)
        self.engine = Engine(device=device or "auto")
        self.task = task
        self.params = get_task(task).parse_params(params)
        self.model, self.tile, self.device = model, tile, device

    def run(self, frame: bytes, spec: Any) -> tuple[Any, bytes, dict[str, Any]]:
        from .jobs import process_frame

        out_spec, out_frame, info, _review = process_frame(self.engine, self.task, spec, frame, self.params,
                                                           model=self.model, tile=self.tile, device=self.device)
        return out_spec, out_frame, info

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"input": [], "output": [], "error": [], "seconds": [], "model": []}
        for src, dst in zip(batch["src"], batch["dst"], strict=True):
            started = time.monotonic()
            error, model = "", ""
            try:
                record = enhance_file(Path(str(src)), Path(str(dst)), self.task, self.run)
                model = str(record.get("model") or "")
            except RetouchError as exc:
                error = exc.message
            except Exception as exc:  # one bad file must not stop an archive run
                error = f"{type(exc).__name__}: {exc}"
            out["input"].append(str(src))
            out["output"].append(str(dst))
            out["error"].append(error)
            out["seconds"].append(round(time.monotonic() - started, 3))
            out["model"].append(model)
        return out


def read_manifest(out_dir: Path) -> set[str]:
    """Inputs a previous run finished (and whose output still exists)."""
    done: set[str] = set()
    path = out_dir / MANIFEST
    if not path.exists():
        return done
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        if not row.get("error") and Path(row.get("output", "")).exists():
            done.add(row["input"])
    return done


def _quiet_ray_loggers() -> None:
    """Ray and Ray Data log INFO lines per dataset; keep errors only."""
    import ray.data  # noqa: F401  (sets up its loggers, which are then turned down)

    for name in list(logging.root.manager.loggerDict):
        if name == "ray" or name.startswith("ray."):
            logging.getLogger(name).setLevel(logging.ERROR)


def run_batch(plan: BatchPlan, args: argparse.Namespace, params: dict[str, Any], model: str | None) -> int:
    try:
        import ray
    except ImportError:
        raise RetouchError("Ray is not installed: pip install 'retouch[cluster]' (or drop --ray)") from None
    from tqdm import tqdm

    from .tasks import get_task

    get_task(args.task).parse_params(params)  # a bad parameter fails here, once, not in every actor
    finished = read_manifest(plan.out_dir)
    jobs = []
    for src, dst in plan.jobs:
        if str(src) in finished:
            plan.skipped += 1
            plan.records.append({"input": str(src), "output": str(dst), "skipped": True})
        else:
            jobs.append((src, dst))
    started = time.monotonic()
    threads = max(1, int(args.threads_per_worker))
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray's chatter would drown the progress bar
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "ignore_reinit_error": True}
    if args.ray in ("local", ""):
        ray.init(num_cpus=args.workers * threads if args.workers else None, include_dashboard=False, **quiet)
    else:
        ray.init(address=args.ray, **quiet)
    try:
        _quiet_ray_loggers()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = args.workers or max(1, cpus // threads)
        records = list(plan.records)
        done = failed = 0
        for r in plan.records:
            if "error" in r:
                failed += 1
                print(f"retouch: {Path(r['input']).name}: {r['error']}", file=sys.stderr)
        if jobs:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
            ds = ray.data.from_items([{"src": str(s), "dst": str(d)} for s, d in jobs],
                                     override_num_blocks=len(jobs))
            ds = ds.map_batches(EnhanceActor, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers),
                                num_cpus=threads,
                                num_gpus=args.gpus_per_worker or 0,
                                fn_constructor_kwargs={"task": args.task, "params": params, "model": model,
                                                       "tile": args.tile, "device": args.device,
                                                       "threads": threads})
            _quiet_ray_loggers()
            manifest = (plan.out_dir / MANIFEST).open("a")
            bar = tqdm(total=len(jobs), unit="file", desc=f"{args.task} on Ray ({workers} workers)",
                       disable=args.quiet or args.json or None, file=sys.stderr)
            try:
                for row in ds.iter_rows():
                    record = {k: row[k] for k in ("input", "output", "seconds", "model")}
                    if row["error"]:
                        failed += 1
                        record["error"] = row["error"]
                        bar.write(f"retouch: {Path(row['input']).name}: {row['error']}", file=sys.stderr)
                    else:
                        done += 1
                    records.append(record)
                    manifest.write(json.dumps(record) + "\n")
                    manifest.flush()
                    bar.update(1)
            finally:
                bar.close()
                manifest.close()
    finally:
        ray.shutdown()
    seconds = round(time.monotonic() - started, 2)
    summary = {"done": done, "skipped": plan.skipped, "failed": failed, "seconds": seconds, "workers": workers,
               "files": records}
    report = plan.out_dir / REPORT
    tmp = report.with_name(f".{report.name}.tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, report)
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        print(f"{done} enhanced, {plan.skipped} skipped, {failed} failed in {seconds:.1f} s on {workers} Ray "
              f"workers -> {plan.out_dir} (report: {report.name})")
    return 1 if failed else 0
