"""Other decision rules for the text guard, scored against the same reference as benchmarks/textguard.py.

The guard flags a line when its two crop sets' 80 crops together read it differently in the conservative image and
the result (`textguard.pool`; until 2026-11-29 it flagged a line when either set alone did). This script reads
every detected line once, keeping each of the 80 crops' readings and the CTC log-likelihood of every candidate
string under every crop (both images), then scores rules that need them:

- pooled (the guard's rule): one reading per image from all 80 crops (the candidate with the highest mean
  log-likelihood), a change of punctuation alone only when each set alone sees it;
- either set (the rule before), both sets;
- vote >= v: at least that share of the 80 cuts read differently in the two images;
- either set and vote >= v.

    python benchmarks/textguard_rules.py                      # tuning split (seed 1), 120 scenes
    python benchmarks/textguard_rules.py --cache /tmp/tg-tune.pkl --lines /tmp/tg-tune-lines.pkl
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import pickle  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from retouch.engine import Engine  # noqa: E402
from retouch.ops import textguard as tg  # noqa: E402
from textguard import TUNE_SEED, Score, load_or_make  # noqa: E402


@dataclass
class Line:
    box: tg.Box
    candidates: list[str]
    ll: np.ndarray  # image (conservative, result) x crop set x crop x candidate: log-likelihoods
    texts: np.ndarray  # image x crop set x crop: each crop's greedy reading
    scores: np.ndarray  # image x crop set x crop: its mean character confidence


def read_line(base: np.ndarray, out: np.ndarray, box: tg.Box) -> Line:
    """Every crop of the guard's two sets around the line's estimated ink box (widened as the guard widens it), read
    in both images."""
    ink = tg.reading_box(out, box)
    cuts = [cut for moves, margins in tg.CROP_SETS for cut in tg.cuts_around(tg.shifted(ink, moves), margins,
                                                                            out.shape)]
    before_side, after_side = tg.read_sides(base, out, cuts)
    posteriors = before_side + after_side
    candidates, ll = tg.candidates_of(posteriors)
    shape = (2, len(tg.CROP_SETS), len(cuts) // len(tg.CROP_SETS))
    return Line(box, candidates, ll.astype(np.float32).reshape(*shape, len(candidates)),
                np.array([p.text for p in posteriors], dtype=object).reshape(shape),
                np.array([p.score for p in posteriors], np.float32).reshape(shape))


def reading(line: Line, sets: list[int]) -> tg.TextFlag:
    """Both images' readings from the crops of `sets`, decided as textguard.read_box decides them (among the
    strings those crops read)."""
    own = sorted(set(line.texts[:, sets].ravel()))
    columns = [line.candidates.index(t) for t in own]
    ll = line.ll[:, sets][..., columns].reshape(2, -1, len(columns)).mean(axis=1)
    scores = line.scores[:, sets].reshape(2, -1).mean(axis=1)
    return tg.decide(line.box, own, ll[0], ll[1], float(scores[0]), float(scores[1]))


def vote(line: Line) -> float:
    """The share of cuts whose two greedy readings differ (spaces aside)."""
    return float(np.mean([not tg.same_text(a, b) for a, b in zip(line.texts[0].ravel(), line.texts[1].ravel(),
                                                                 strict=True)]))


def rules() -> dict[str, Callable[[Line], bool]]:
    def own(line: Line) -> list[tg.TextFlag]:
        return [reading(line, [s]) for s in range(len(tg.CROP_SETS))]

    def either(line: Line) -> bool:  # the rule before 2026-11-29: either set, punctuation alone by both
        differing = [r for r in own(line) if tg.changed(r)]
        return any(not tg.same_letters(r.before, r.after) for r in differing) or len(differing) == len(tg.CROP_SETS)

    def pooled(line: Line) -> bool:  # the guard's rule (textguard.pool)
        return tg.changed(tg.punctuation_checked(reading(line, list(range(len(tg.CROP_SETS)))), lambda: own(line)))

    found: dict[str, Callable[[Line], bool]] = {
        "pooled, 80 crops (the guard)": pooled,
        "either set": either,
        "both sets": lambda line: all(tg.changed(r) for r in own(line)),
    }
    for share in (0.2, 0.3, 0.4, 0.5):
        found[f"vote >= {share}"] = lambda line, share=share: vote(line) >= share
        found[f"either set and vote >= {share}"] = lambda line, share=share: either(line) and vote(line) >= share
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=120)
    parser.add_argument("--seed", type=int, default=TUNE_SEED)
    parser.add_argument("--cache", type=Path, default=None, help="scenes and reference (as textguard.py --cache)")
    parser.add_argument("--lines", type=Path, default=None, help="keep every line's crop readings in this file")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cases = load_or_make(args.cache, args.seed, args.scenes, Engine(device="cpu", precision="fp32"))
    if args.lines is not None and args.lines.exists():
        with args.lines.open("rb") as f:
            lines = pickle.load(f)  # noqa: S301 (a file this script wrote)
    else:
        lines = []
        for case in cases:
            base, out = tg.to_bgr8(tg.conservative(case.source, case.scale)), tg.to_bgr8(case.result)
            boxes = tg.merge_boxes(tg.ocr().detect(out) + tg.ocr().detect(base))
            lines.append([read_line(base, out, b) for b in boxes if b[3] - b[1] >= tg.MIN_HEIGHT])
        if args.lines is not None:
            with args.lines.open("wb") as f:
                pickle.dump(lines, f)
    changed = sum(c.status.count("changed") for c in cases)
    print(f"seed {args.seed}: {len(cases)} scenes, {sum(len(c.scene.regions) for c in cases)} strings, {changed} "
          f"changed by the model, {sum(len(per) for per in lines)} lines read")
    for name, rule in rules().items():
        score = Score()
        for case, per in zip(cases, lines, strict=True):
            score.add(case, [line.box for line in per if rule(line)])
        print(f"  {name:30} {score.line()}")


if __name__ == "__main__":
    main()
