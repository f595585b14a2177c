"""`retouch`: the command line. Every image job goes through the daemon (started on demand), like the plugins."""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__, connection, filejob
from .client import Client, Progress
from .errors import BadRequest, DaemonUnavailable, RetouchError
from .imageio import write_image
from .protocol import ImageSpec

START_TIMEOUT = 60.0


# ---- serve ---------------------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    existing = connection.live_connection()
    if existing is not None:
        print(f"retouch: a daemon is already running (pid {existing['pid']}, port {existing['port']})",
              file=sys.stderr)
        return 0
    if args.detach:
        return _serve_detached(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        filename=args.log_file)
    from .server import AlreadyRunning, serve

    curve = None
    if args.curve:
        from .curve import CurveKeys

        curve = CurveKeys.load()
    try:
        serve(args.host, args.port, args.device, args.precision, int(args.max_megapixels * 1e6), curve,
              int(args.vram_budget * (1 << 30)))
    except AlreadyRunning as exc:
        print(f"retouch: {exc.message}", file=sys.stderr)
    return 0


def _serve_detached(args: argparse.Namespace) -> int:
    log_file = connection.runtime_dir() / "daemon.log"
    cmd = [sys.executable, "-m", "retouch", "serve", "--host", args.host, "--port", str(args.port),
           "--device", args.device, "--precision", args.precision, "--log-file", str(log_file),
           "--max-megapixels", str(args.max_megapixels), "--vram-budget", str(args.vram_budget),
           *(["--curve"] if args.curve else [])]
    with open(os.devnull, "rb") as devnull, open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=devnull, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = connection.live_connection()
        if info is not None:
            try:
                Client(autostart=False, timeout=5).ping()
            except RetouchError:
                pass
            else:
                print(f"retouch: daemon running (pid {info['pid']}, port {info['port']})", file=sys.stderr)
                return 0
        if proc.poll() is not None and connection.live_connection() is None:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] if log_file.exists() else []
            print(f"retouch: error: the daemon exited at start ({tail[0] if tail else proc.returncode})",
                  file=sys.stderr)
            return 1
        time.sleep(0.05)
    print(f"retouch: error: the daemon did not come up within {START_TIMEOUT:.0f} s (see {log_file})",
          file=sys.stderr)
    return 1


# ---- image <-> wire ------------------------------------------------------------------------------------------
# CLI flag -> task parameter; only flags the user gave are sent, so the daemon names any that the task lacks.
PARAM_FLAGS = ("scale", "noise_level", "blur", "blur_trace", "ensemble", "exposure", "white_balance", "detect",
               "sensitivity", "grow", "inpainter", "mask_is", "vividness", "auto_exposure", "auto_white_balance",
               "strength", "grain", "grain_seed", "color_fix", "face_strength", "text_guard", "protect_text")


def _number_or_auto(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


def _param_pair(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {name: getattr(args, name) for name in PARAM_FLAGS if getattr(args, name) is not None}
    params.update(dict(args.param or []))
    return params


class ProgressBar:
    """tqdm on a terminal, nothing otherwise."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=label, unit="%", leave=False,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, event: Progress) -> None:
        if self.bar is not None:
            self.bar.n = round(event.fraction * 100)
            self.bar.set_postfix_str(event.stage, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _model_arg(model: str | None) -> str | None:
    """A model path is resolved here: the daemon runs in another working directory."""
    if model and Path(model).expanduser().exists():
        return str(Path(model).expanduser().resolve())
    return model


def enhance_file(client: Client, src: Path, dst: Path, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """One file through the daemon."""
    bar = ProgressBar(label, not args.quiet)
    review_paths = {key: Path(path) for key in ("review", "save_mask") if (path := getattr(args, key, None))}
    if "save_mask" in review_paths and args.task != "restore":
        raise BadRequest("--save-mask writes the damage mask of --task restore; for other tasks use --review")
    params = _params(args)
    for path in review_paths.values():
        filejob.check_output(path)
        params["review"] = True
    mask_path = getattr(args, "mask", None)
    reviews: list[bytes | None] = []

    def run(frame: bytes, spec: ImageSpec) -> tuple[ImageSpec, bytes, dict[str, Any]]:
        mask = filejob.read_mask(Path(mask_path), spec.width, spec.height) if mask_path else None
        try:
            result = client.enhance(args.task, frame, spec, on_progress=bar, params=params, mask=mask,
                                    model=_model_arg(args.model), tile=args.tile, device=args.device)
        finally:
            bar.close()
        reviews.append(result.review)
        return result.spec, result.pixels, result.info

    record = filejob.enhance_file(src, dst, args.task, run)
    if review_paths and reviews and reviews[0] is not None:
        size = record_review_size(record, reviews[0])
        for key, path in review_paths.items():
            write_image(path, np.frombuffer(reviews[0], np.uint8).reshape(size[1], size[0]))
            record[key] = str(path)
    return record


def record_review_size(record: dict[str, Any], review: bytes) -> tuple[int, int]:
    w, h = record["output_size"] or (0, 0)
    if w * h != len(review):
        raise RetouchError(f"the review map has {len(review)} pixels, the result {w}x{h}")
    return w, h


def cmd_enhance(args: argparse.Namespace) -> int:
    src, dst = Path(args.input), Path(args.output)
    if src.resolve() == dst.resolve():
        raise BadRequest(f"{dst}: the output would overwrite the input; choose another name")
    client = Client(start_timeout=START_TIMEOUT)
    summary = enhance_file(client, src, dst, args, src.name)
    if args.json:
        print(json.dumps(summary))
    elif not args.quiet:
        w, h = summary["output_size"] or ("?", "?")
        print(f"{dst}: {w}x{h}, {summary['task']} with {summary['model']} on {summary['device']} "
              f"in {summary['seconds']:.2f} s")
        for flag in summary["flags"]:
            print(f"  flag: {flag.get('label', flag.get('kind'))} at {flag.get('box')}")
        if summary["note"]:
            print(f"  note: {summary['note']}")
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    plan = filejob.plan_batch(Path(args.input_dir), Path(args.output_dir), args.format)
    if args.ray is not None:
        from . import raybatch

        return raybatch.run_batch(plan, args, _params(args), _model_arg(args.model))
    for r in plan.records:
        if "error" in r:
            print(f"retouch: {Path(r['input']).name}: {r['error']}", file=sys.stderr)
    client = Client(start_timeout=START_TIMEOUT)
    records = list(plan.records)
    done = 0
    for i, (src, dst) in enumerate(plan.jobs, 1):
        try:
            records.append(enhance_file(client, src, dst, args, f"[{i}/{len(plan.jobs)}] {src.name}"))
            done += 1
        except RetouchError as exc:
            records.append({"input": str(src), "error": exc.message, "code": exc.code})
            print(f"retouch: {src.name}: {exc.message}", file=sys.stderr)
    failed = sum(1 for r in records if "error" in r)
    if args.json:
        print(json.dumps({"done": done, "skipped": plan.skipped, "failed": failed, "files": records}))
    elif not args.quiet:
        print(f"{done} enhanced, {plan.skipped} skipped (output exists), {failed} failed -> {plan.out_dir}")
    return 1 if failed else 0


# ---- daemon queries ------------------------------------------------------------------------------------------
def licence_mark(m: dict[str, Any]) -> str:
    """How every list shows a model's licence: non-commercial ones are marked so."""
    if m.get("commercial") is False:
        return f"NON-COMMERCIAL ({m.get('license')})"
    return str(m.get("license") or "licence unknown")


def cmd_models(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None) or "list"
    return MODEL_ACTIONS[action](args)


def column_width(values: list[str], at_least: int) -> int:
    """A text column as wide as its longest entry (a user's model names can be long), and at least `at_least`."""
    return max([at_least] + [len(v) for v in values])


def cmd_models_list(args: argparse.Namespace) -> int:
    models = Client(start_timeout=START_TIMEOUT).models()
    if args.json:
        print(json.dumps({"models": models}))
        return 0
    name_width = column_width([m["name"] for m in models], 32)
    task_width = column_width([m.get("task") or "-" for m in models], 10)  # "detect-damage"
    for m in models:
        kind = "builtin" if m["builtin"] else "user"
        scale = f"x{m['scale']}" if m.get("scale") else ""
        loaded = " (loaded)" if m.get("loaded") else ""
        print(f"{m['name']:{name_width}} {kind:8} {m.get('task') or '-':{task_width}} {scale:4} {licence_mark(m)}  "
              f"{m['path']}{loaded}")
    return 0


def cmd_models_add(args: argparse.Namespace) -> int:
    from . import modelstore

    meta = modelstore.add(Path(args.file), name=args.name, license=args.license, commercial=args.commercial,
                          task=args.task)
    if args.json:
        print(json.dumps(meta))
    else:
        print(f"retouch: added {meta['name']}: {meta['architecture']} x{meta['scale']} for {meta['task']}, "
              f"sha256 {meta['sha256'][:16]}…, licence: {licence_mark(meta)}", file=sys.stderr)
    return 0


def cmd_models_remove(args: argparse.Namespace) -> int:
    from . import modelstore

    path = modelstore.remove(args.name)
    print(f"retouch: removed {args.name} ({path})", file=sys.stderr)
    return 0


def cmd_models_download(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import modelstore

    entry = modelstore.catalog_entry(args.name)
    with tqdm(total=entry.size, unit="B", unit_scale=True, desc=entry.name, disable=args.json or None,
              file=sys.stderr) as bar:
        def on_bytes(done: int, total: int) -> None:
            bar.update(done - bar.n)

        meta = modelstore.download(args.name, on_bytes)
    if args.json:
        print(json.dumps(meta))
    else:
        print(f"retouch: installed {meta['name']} (sha256 verified against {entry.source}); licence: "
              f"{licence_mark(meta)}", file=sys.stderr)
    return 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from . import modelstore

    rows = modelstore.verify(args.name)
    bad = [r for r in rows if r["status"] == "MISMATCH"]
    if args.json:
        print(json.dumps({"models": rows, "ok": not bad}))
    else:
        name_width = column_width([r["name"] for r in rows], 32)
        for r in rows:
            print(f"{r['name']:{name_width}} {r['status']:22} {r['sha256']}")
    if bad:
        print(f"retouch: {len(bad)} model(s) changed since they were installed: {', '.join(r['name'] for r in bad)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_models_catalog(args: argparse.Namespace) -> int:
    from . import modelstore

    entries = modelstore.load_catalog()
    if args.json:
        print(json.dumps({"catalog": [vars(e) for e in entries]}))
        return 0
    for e in entries:
        mark = licence_mark({"license": e.license, "commercial": e.commercial})
        print(f"{e.name:34} {e.task:8} {e.architecture:14} x{e.scale}  {e.size / 1e6:7.1f} MB  {mark}")
    return 0


MODEL_ACTIONS = {"list": cmd_models_list, "add": cmd_models_add, "remove": cmd_models_remove,
                 "download": cmd_models_download, "verify": cmd_models_verify, "catalog": cmd_models_catalog}


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _param_line(p: dict[str, Any]) -> str:
    flag = "--" + p["name"].replace("_", "-")
    if p["kind"] == "bool":  # a store-true flag for a False default, --no-X for a True default
        if p["default"]:
            return f"    {'--no-' + flag[2:]:22} {'':24} (on by default) {p['help']}"
        return f"    {flag:22} {'':24} {p['help']}"
    if p["choices"]:
        values = "|".join(str(c) for c in p["choices"])
    elif p["minimum"] is not None:
        values = ("auto|" if p["allow_auto"] else "") + f"{_number(p['minimum'])}..{_number(p['maximum'])}"
    else:
        values = p["kind"]
    default = f"default {p['default']}: " if p["default"] not in ("", None) else ""  # an empty text: none
    return f"    {flag:22} {values:24} {default}{p['help']}"


def cmd_tasks(args: argparse.Namespace) -> int:
    tasks = Client(start_timeout=START_TIMEOUT).tasks()
    if args.json:
        print(json.dumps({"tasks": tasks}))
        return 0
    for t in tasks:
        model = f" (default model {t['default_model']})" if t["default_model"] else ""
        print(f"{t['name']}: {t['description']}{model}")
        for p in t["params"]:
            if p["group"] == "task":
                print(_param_line(p))
    print("every task also takes (before / after the task):")
    for p in tasks[0]["params"] if tasks else []:
        if p["group"] != "task":
            print(_param_line(p))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    client = Client(autostart=False)
    if not client.is_running():
        if args.json:
            print(json.dumps({"running": False}))
        else:
            print("retouch: no daemon is running")
        return 3
    status = client.status()
    if args.json:
        print(json.dumps(dict(status, running=True, job=status["running"])))
    else:
        running = status["running"]
        job = f"{running['task']} {running['fraction'] * 100:.0f}%" if running else "idle"
        print(f"daemon pid {status['pid']} on {status['host']}:{status['port']}, device {status['device']}, "
              f"{job}, {status['queued']} queued, {status['completed']} done, "
              f"models loaded: {', '.join(Path(p).name for p in status['loaded_models']) or 'none'}")
        dropped = ", ".join(f"{reason} {count}" for reason, count in sorted(status["dropped"].items()))
        print(f"messages dropped: {dropped or 'none'}")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from .curve import create_keys, keys_dir

    paths = create_keys(Path(args.dir) if args.dir else keys_dir(), args.client)
    print(f"server key:  {paths['server_public']} (secret: {paths['server_secret']})")
    print(f"client {args.client!r}: copy {paths['client_secret']} to the client machine and point "
          f"RETOUCH_CLIENT_KEY at it; its public key is authorized in {paths['client_public'].parent}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    client = Client(autostart=False)
    if not client.is_running():
        print("retouch: no daemon is running", file=sys.stderr)
        return 0
    client.shutdown()
    print("retouch: daemon stopped", file=sys.stderr)
    return 0


def cmd_install_plugin(args: argparse.Namespace) -> int:
    from .install_plugin import install

    where = install(args.editor, Path(args.bundle) if args.bundle else None, Path(args.dest) if args.dest else None)
    if args.editor == "krita":
        print(f"retouch: Krita plugin installed in {where} and enabled; restart Krita, then open "
              "Settings > Dockers > Retouch", file=sys.stderr)
    else:
        print(f"retouch: GIMP plug-in installed in {where}; restart GIMP, then use "
              "Filters > Enhance > Retouch AI", file=sys.stderr)
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from . import service

    if args.action == "status":
        state = service.status()
        if args.json:
            print(json.dumps(state))
        else:
            print(f"service unit: {state['unit']} ({'installed' if state['installed'] else 'not installed'}"
                  f"{', out of date: run install again' if state['installed'] and not state['current'] else ''}); "
                  f"manager: {state['manager_state']}; daemon: "
                  f"{'running, pid ' + str(state['daemon_pid']) if state['daemon_running'] else 'not running'}")
        return 0 if state["installed"] else 3
    if args.action == "install":
        path, notes = service.install(start=not args.no_start)
        print(f"retouch: service installed at {path}" + ("" if args.no_start else "; it starts at login"),
              file=sys.stderr)
    else:
        path, notes = service.uninstall(stop=not args.no_start)
        print(f"retouch: service removed ({path})", file=sys.stderr)
    for note in notes:
        print(f"retouch: {note}", file=sys.stderr)
    return 0


# ---- parser --------------------------------------------------------------------------------------------------
def _add_job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", default="upscale", help="what to do (default: upscale)")
    p.add_argument("--scale", type=int, help="upscale: factor 2 or 4 (default 2)")
    p.add_argument("--noise-level", type=_number_or_auto,
                   help="denoise: noise standard deviation on the 0..255 scale, or auto (default)")
    p.add_argument("--blur", choices=("auto", "defocus", "motion"),
                   help="sharpen: the kind of blur (default auto; motion also estimates the shake and mixes its "
                        "deconvolution in, several times slower)")
    p.add_argument("--blur-trace", metavar="X,Y,W,H",
                   help="sharpen: a small box (px) around one blurred point of light; its trace is the blur kernel and "
                        "the image is deconvolved with it instead of run through the model")
    p.add_argument("--ensemble", action="store_const", const=True,
                   help="upscale, denoise, sharpen, colorize: average 8 flipped and turned passes (8x slower, a "
                        "little cleaner); restore: the damage detector's")
    p.add_argument("--no-exposure", dest="exposure", action="store_const", const=False,
                   help="tone: leave the exposure alone")
    p.add_argument("--no-white-balance", dest="white_balance", action="store_const", const=False,
                   help="tone: leave the white balance alone")
    p.add_argument("--no-detect", dest="detect", action="store_const", const=False,
                   help="restore: do not look for damage; repair only the --mask (with --mask-is damage)")
    p.add_argument("--sensitivity", type=float, help="restore: how readily a pixel counts as damaged, 0..1 "
                   "(default 0.5)")
    p.add_argument("--grow", type=int, help="restore: px added around each damaged spot before filling (default 2)")
    p.add_argument("--inpainter", choices=("model", "telea"), help="restore: what fills the damage (default model)")
    p.add_argument("--mask-is", choices=("area", "damage"),
                   help="restore: the --mask (or selection) is the area to work in (default), or damage to repair")
    p.add_argument("--vividness", type=float, help="colorize: how colourful, 0..2 (default 1: like a typical photo)")
    p.add_argument("--auto-exposure", action="store_const", const=True, help="correct the exposure before the task")
    p.add_argument("--auto-white-balance", action="store_const", const=True,
                   help="neutralise a colour cast before the task")
    p.add_argument("--strength", type=float, help="blend with the source, 0..1 (0 = source unchanged; default 1)")
    p.add_argument("--grain", type=float, help="film-like grain added after the task, 0..1 (default 0)")
    p.add_argument("--grain-seed", type=int, help="grain pattern seed (default 0: reruns are identical)")
    p.add_argument("--color-fix", choices=("none", "wavelet", "adain"),
                   help="keep the source's low-frequency colours (default none)")
    p.add_argument("--face-strength", type=float,
                   help="strength on faces relative to the rest, 0..1 (default 0.5; 1 = no face detection)")
    p.add_argument("--text-guard", action="store_const", const=True,
                   help="upscale, denoise, sharpen: read text before and after, flag regions that read differently")
    p.add_argument("--protect-text", action="store_const", const=True,
                   help="like --text-guard, and keep flagged regions as the input (or its bicubic enlargement)")
    p.add_argument("--param", type=_param_pair, action="append", metavar="NAME=VALUE",
                   help="any task parameter by name (see `retouch tasks`); repeatable")
    p.add_argument("--model", help="model name (see `retouch models`) or path to a model file")
    p.add_argument("--tile", type=int, help="tile size in input pixels (default: from the memory budget)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="run this job on the CPU or the GPU")
    p.add_argument("--json", action="store_true", help="print one JSON object describing what was done")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retouch", description="AI photo enhancement through the Retouch daemon")
    parser.add_argument("--version", action="version", version=f"retouch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the daemon")
    p.add_argument("--detach", action="store_true", help="start in the background and return once it answers")
    p.add_argument("--host", "--listen", dest="host", default="127.0.0.1",
                   help="address to listen on (default: loopback only; any other address needs --curve)")
    p.add_argument("--curve", action="store_true", help="encrypt and authenticate with ZeroMQ CURVE (retouch keys)")
    p.add_argument("--max-megapixels", type=float, default=200.0, help="largest image accepted per job (default 200)")
    p.add_argument("--port", type=int, default=0, help="port (default: a free one, written to the connection file)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--vram-budget", type=_positive_float, default=8.0, metavar="GIB",
                   help="GPU memory a job may use at its peak, weights included; the tile size obeys it (default 8)")
    p.add_argument("--log-file", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("enhance", help="enhance one image")
    p.add_argument("input", help="PNG, JPEG or TIFF file")
    p.add_argument("-o", "--output", required=True, help="where to write the result (replaced only when complete)")
    p.add_argument("--review", metavar="PATH", help="also write the invention map (gray image: white = detail the "
                   "input does not support) to PATH; model tasks only")
    p.add_argument("--mask", metavar="PATH", help="a grayscale image the size of the input: where to work (white), "
                   "as an editor's selection; with --task restore and --param mask_is=damage, the damage to repair")
    p.add_argument("--save-mask", metavar="PATH", help="--task restore: also write the mask of the pixels it "
                   "repaired (white = damaged) to PATH")
    _add_job_options(p)
    p.set_defaults(func=cmd_enhance)

    p = sub.add_parser("batch", help="enhance every image of a folder (skips outputs that exist, so it resumes)")
    p.add_argument("input_dir")
    p.add_argument("-o", "--output-dir", required=True)
    p.add_argument("--format", choices=("png", "jpg", "tif"), help="output format (default: same as the input)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray: a local Ray runtime, or join ADDRESS (ray://host:10001 or auto); "
                        "needs pip install 'retouch[cluster]'")
    p.add_argument("--workers", type=int, help="Ray: actors (default: the cluster's CPUs / threads per worker)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="Ray: CPU threads (and CPUs) per actor")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="Ray: GPU share per actor, e.g. 0.5")
    _add_job_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("models", help="list, add, remove, download and verify models")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)
    msub = p.add_subparsers(dest="action", metavar="ACTION")
    q = msub.add_parser("list", help="the models the daemon can use (default)")
    q.add_argument("--json", action="store_true")
    q = msub.add_parser("add", help="copy a model file (.pth .safetensors .ckpt .onnx) into your model folder")
    q.add_argument("file")
    q.add_argument("--name", help="name to use it by (default: the file name)")
    q.add_argument("--license", help="its licence, shown in every list")
    use = q.add_mutually_exclusive_group()
    use.add_argument("--commercial", dest="commercial", action="store_true", default=None,
                     help="its licence allows commercial use")
    use.add_argument("--non-commercial", dest="commercial", action="store_false",
                     help="its licence forbids commercial use (marked in every list)")
    q.add_argument("--task", help="the task it serves (default: from its architecture's purpose)")
    q.add_argument("--json", action="store_true")
    q = msub.add_parser("remove", help="delete a model from your model folder")
    q.add_argument("name")
    q = msub.add_parser("download", help="download a catalog model (resumes; verified by sha256)")
    q.add_argument("name")
    q.add_argument("--json", action="store_true")
    q = msub.add_parser("verify", help="check every installed model against its recorded sha256")
    q.add_argument("name", nargs="?")
    q.add_argument("--json", action="store_true")
    q = msub.add_parser("catalog", help="the models `download` knows, with licences")
    q.add_argument("--json", action="store_true")
    for name, func, text in (("tasks", cmd_tasks, "list the tasks and their parameters"),
                             ("status", cmd_status, "show whether the daemon runs and what it does")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    p = sub.add_parser("keys", help="create CURVE keys for remote use (server pair once, plus one client pair)")
    p.add_argument("--client", default="client", help="name of the client key pair to create (default: client)")
    p.add_argument("--dir", help="keys folder (default: RETOUCH_KEYS_DIR or the user config dir)")
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("install-plugin", help="install the Krita or GIMP plugin for this user")
    p.add_argument("editor", choices=("krita", "gimp"))
    p.add_argument("--bundle", help="the plugin zip (default: build it from this source checkout)")
    p.add_argument("--dest", help="install into this folder instead of the editor's own plugin folder")
    p.set_defaults(func=cmd_install_plugin)
    p = sub.add_parser("service", help="start the daemon at login (systemd user unit, launchd agent, Startup)")
    p.add_argument("action", choices=("install", "uninstall", "status"))
    p.add_argument("--no-start", action="store_true", help="only write (or remove) the unit; do not start or stop it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_service)
    p = sub.add_parser("stop", help="stop the daemon")
    p.set_defaults(func=cmd_stop)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except RetouchError as exc:
        print(f"retouch: error: {exc.message}", file=sys.stderr)
        return 4 if isinstance(exc, DaemonUnavailable) else 1
    except KeyboardInterrupt:
        print("retouch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
