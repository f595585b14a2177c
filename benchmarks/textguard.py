"""The text guard on generated text: does it flag the regions whose reading the upscaler changed, and only those?

The set (tests/text_pictures.py): scenes of 256 x 256 px, flat or held-out photo backgrounds, with three strings
each (digits, words in upper/lower case, plate-like strings such as "AB 123 CD" and strings of easily confused
characters such as "8B0O-1I7"), in the DejaVu (or whatever is installed) fonts, 10-36 px tall, dark on light and
light on dark. Each scene is blurred (Gaussian, sigma 0.15-0.75 x the scale, in scene pixels), area-downscaled by 2
or 4 and upscaled back by the builtin model (retouch-upscale-x2 / -x4), so the scene's boxes are result pixels.

"Changed", the reference: each rendered string's own box (known, not detected), padded by a quarter of its height,
is read (rapidocr recognition only) in the conservative image (bicubic upscale of the degraded scene) and in the
result; the region's reading changed when the two readings differ (spaces ignored, case kept). This uses neither the
guard's boxes nor its confidence threshold.

Scores: recall = changed regions with at least one flag on them / changed regions; false-flag share = flags that lie
on no changed region (on an unchanged string, or on no string at all) / all flags. A flag lies on a region when it
covers at least half of the region or the region covers at least half of it. Seconds per megapixel are of the
result, for text_flags alone (the model's time apart), on 2 threads.

    python benchmarks/textguard.py                # evaluation split (seed 2), with the chosen threshold
    python benchmarks/textguard.py --tune         # tuning split (seed 1): sweep the confidence threshold
    python benchmarks/textguard.py --naive        # also the naive design: full OCR on both images, boxes compared
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from retouch.engine import Engine  # noqa: E402
from retouch.engine.registry import resolve  # noqa: E402
from retouch.ops import textguard as tg  # noqa: E402
from text_pictures import Scene, bicubic, degrade, make_scene  # noqa: E402

TUNE_SEED, EVAL_SEED = 1, 2
SIZE = 320  # scene side, px (result)
MIN_PX, MAX_PX = 5, 12  # capital height of the strings in the input (degraded) picture, px
JITTER = 0.08  # the reference reads each string's box and four copies shifted by this share of its height
REF_MARGINS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.38, 0.45)  # ... each extended by these shares of its height
LEGIBLE = 0.5  # the reference's legibility bar: rapidocr's own default text_score
SCORES = (0.0, 0.5, 0.7, 0.8, 0.9)
EVIDENCE = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


@dataclass
class Case:
    scene: Scene
    scale: int
    blur: float
    source: np.ndarray  # the degraded scene
    result: np.ndarray  # its upscale by the model
    readings: list[tg.TextFlag]  # per region, the reference readings
    changed: list[bool]  # per region, by the reference


def cases(seed: int, count: int, engine: Engine, min_px: int = MIN_PX) -> Iterator[Case]:
    rng = random.Random(seed)
    models = {s: engine.get(resolve(f"retouch-upscale-x{s}")) for s in (2, 4)}
    for _ in range(count):
        scale = rng.choice((2, 4))
        scene = make_scene(rng, size=(SIZE, SIZE), heights=(min_px * scale, MAX_PX * scale))
        blur = rng.uniform(0.15, 0.75) * scale
        source = degrade(scene.image, scale, blur)
        result, _ = engine.run(models[scale], source)
        result = np.ascontiguousarray(np.clip(result, 0, 1), np.float32)
        readings = reference(scene, source, result, scale)
        yield Case(scene, scale, blur, source, result, readings, [ref_changed(r) for r in readings])


def reference(scene: Scene, source: np.ndarray, result: np.ndarray, scale: int) -> list[tg.TextFlag]:
    """Both readings of every rendered string, read on its own (known) box."""
    base, out = tg.to_bgr8(bicubic(source, scale)), tg.to_bgr8(result)
    return [tg.read_box(base, out, r.box, known(r.box), REF_MARGINS) for r in scene.regions]


def known(box: tg.Box) -> list[tg.Box]:
    """The rendered string's ink box, and the same shifted by JITTER of its height left, right, up and down."""
    d = max(1, round(JITTER * (box[3] - box[1])))
    shifts = ((-d, 0), (d, 0), (0, -d), (0, d))
    return [box] + [(box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy) for dx, dy in shifts]


def ref_changed(reading: tg.TextFlag) -> bool:
    return not tg.same_text(reading.before, reading.after) and max(reading.before_score, reading.after_score) >= LEGIBLE


def on_region(box: tg.Box, region: tg.Box) -> bool:
    ix = max(0, min(box[2], region[2]) - max(box[0], region[0]))
    iy = max(0, min(box[3], region[3]) - max(box[1], region[1]))
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    region_area = (region[2] - region[0]) * (region[3] - region[1])
    return inter >= 0.5 * min(area, region_area)


@dataclass
class Score:
    regions: int = 0
    changed: int = 0
    caught: int = 0
    flags: int = 0
    false_flags: int = 0

    def add(self, case: Case, flagged: list[tg.Box]) -> None:
        boxes = [r.box for r in case.scene.regions]
        self.regions += len(boxes)
        self.changed += sum(case.changed)
        self.caught += sum(ch and any(on_region(f, b) for f in flagged) for b, ch in zip(boxes, case.changed,
                                                                                         strict=True))
        self.flags += len(flagged)
        self.false_flags += sum(not any(ch and on_region(f, b) for b, ch in zip(boxes, case.changed, strict=True))
                                for f in flagged)

    def line(self) -> str:
        recall = self.caught / max(self.changed, 1)
        false = self.false_flags / max(self.flags, 1)
        return (f"recall {recall:6.1%} ({self.caught}/{self.changed})   false flags {false:6.1%} "
                f"({self.false_flags}/{self.flags})")


def tune(all_cases: list[Case]) -> None:
    """Every candidate box is read once; each pair of thresholds is then applied to the same readings."""
    read = [tg.read_text(c.source, c.result) for c in all_cases]
    print("min score  min evidence  scores on the tuning split")
    for min_score in SCORES:
        for min_evidence in EVIDENCE:
            score = Score()
            for case, candidates in zip(all_cases, read, strict=True):
                score.add(case, [f.box for f in candidates if tg.changed(f, min_score, min_evidence)])
            print(f"{min_score:9.2f}  {min_evidence:12.1f}  {score.line()}")
    print(f"(module thresholds now: MIN_SCORE = {tg.MIN_SCORE}, MIN_EVIDENCE = {tg.MIN_EVIDENCE})")


def naive_flags() -> Callable[[np.ndarray, np.ndarray], list[tg.Box]]:
    """The design that failed: full OCR (detection + recognition) on each image, boxes matched by IoU >= 0.5;
    a result box with no match or another text is flagged, and so is a conservative box with no match."""
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "error",
                              "EngineConfig.onnxruntime.intra_op_num_threads": int(os.environ["OMP_NUM_THREADS"])})

    def lines(image: np.ndarray) -> list[tuple[tg.Box, str]]:
        out = engine(tg.to_bgr8(image))
        if getattr(out, "boxes", None) is None or out.txts is None:
            return []
        return [((int(q[:, 0].min()), int(q[:, 1].min()), int(q[:, 0].max()), int(q[:, 1].max())), t)
                for q, t in zip(np.asarray(out.boxes), out.txts, strict=True)]

    def flags(source: np.ndarray, result: np.ndarray) -> list[tg.Box]:
        before = lines(tg.conservative(source, tg.result_scale(source, result)))
        after = lines(result)
        found = []
        for box, text in after:
            match = max(before, key=lambda bt: tg.iou(bt[0], box), default=None)
            if match is None or tg.iou(match[0], box) < 0.5 or not tg.same_text(match[1], text):
                found.append(box)
        found += [box for box, _ in before if all(tg.iou(box, b) < 0.5 for b, _ in after)]
        return found

    return flags


def evaluate(all_cases: list[Case], naive: bool) -> None:
    tg.text_flags(all_cases[0].source, all_cases[0].result)  # load the OCR models outside the timing
    designs: dict[str, Callable[[np.ndarray, np.ndarray], list[tg.Box]]] = {
        "text guard": lambda s, r: [f.box for f in tg.text_flags(s, r)]}
    if naive:
        designs["naive: full OCR twice"] = naive_flags()
    for name, flags in designs.items():
        score, seconds, megapixels = Score(), 0.0, 0.0
        for case in all_cases:
            start = time.perf_counter()
            found = flags(case.source, case.result)
            seconds += time.perf_counter() - start
            megapixels += case.result.shape[0] * case.result.shape[1] / 1e6
            score.add(case, found)
        print(f"{name:24} {score.line()}   {seconds / megapixels:5.2f} s/MP")


def large_timing(engine: Engine) -> None:
    """Seconds per MP on one larger picture (2048 x 2048 result, x4 of a 512 x 512 source, 40 strings)."""
    scene = make_scene(random.Random(EVAL_SEED), size=(2048, 2048), count=40, heights=(12, 80))
    source = degrade(scene.image, 4, 1.5)
    result, _ = engine.run(engine.get(resolve("retouch-upscale-x4")), source)
    start = time.perf_counter()
    flags = tg.text_flags(source, np.clip(result, 0, 1))
    seconds = time.perf_counter() - start
    print(f"large picture: 2048 x 2048 result, {len(scene.regions)} strings, {len(flags)} flags, "
          f"{seconds:.1f} s = {seconds / 2048**2 * 1e6:.2f} s/MP")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune", action="store_true", help="sweep the threshold on the tuning split")
    parser.add_argument("--naive", action="store_true", help="also score full OCR run twice")
    parser.add_argument("--scenes", type=int, default=120)
    parser.add_argument("--seed", type=int, default=None, help="default: 1 with --tune, else 2")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    seed = args.seed if args.seed is not None else TUNE_SEED if args.tune else EVAL_SEED
    engine = Engine(device="cpu", precision="fp32")
    all_cases = list(cases(seed, args.scenes, engine))
    regions = sum(len(c.scene.regions) for c in all_cases)
    changed = sum(sum(c.changed) for c in all_cases)
    print(f"seed {seed}: {len(all_cases)} scenes, {regions} text regions, {changed} readings changed by the model "
          f"({sum(c.scale == 2 for c in all_cases)} x2, {sum(c.scale == 4 for c in all_cases)} x4)")
    if args.tune:
        tune(all_cases)
    else:
        evaluate(all_cases, args.naive)
        large_timing(engine)


if __name__ == "__main__":
    main()
