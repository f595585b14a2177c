"""The text guard: find text whose reading the enhancement changed (a blurry "8" made a sharp "B"), and keep it safe.

Text lines are detected on the result and on the conservative image (a bicubic upscale of the input, or the input
itself for same-size tasks), only in windows around the pixels that differ (`changed_windows`: a restore touches a
few regions; after an upscale that is the whole image), and the two sets of boxes are merged; a second, more
sensitive pass (both images enlarged twice, lower thresholds) adds the small or faint lines the first did not find,
and boxes that are pieces of one line (`one_line`) are joined.
Each line is then read (recognition only) in both images from the same cuts, by two independent sets of crops around
its estimated ink box (the detector's box less its usual padding, each edge measured from the result's pixels where
they show it), widened a little on the left and right so that no crop cuts a glyph: the box and four copies moved by
a few percent of its height (left/right/up/down in one set, diagonally in the other), each extended by eight margins
(the second set is skipped when the first reads the line the same in both images, and sure of it: `settled`). One
crop's reading flips with a pixel of margin on glyphs the OCR can hardly tell apart ("0"/"O", "1"/"l"), so an
image's reading is the candidate string (any crop's greedy reading, from either image) with the highest CTC
log-likelihood averaged over the crops of both sets together (`pool`: one set alone tips such a glyph either way
with its crops' geometry; until 2026-11-29 a line was flagged when either set alone read it differently, which
flagged those tips too). A line is flagged when the two images' readings differ (exact characters, spaces ignored:
"8"/"B" and "0"/"O" are what must be caught; a difference in punctuation alone only when each set alone sees it) and
one of them is read confidently (MIN_SCORE); a difference only in glyphs the OCR hardly tells apart also needs the
images to disagree clearly (CONFUSABLE_EVIDENCE: a near tie in each image is a coin toss). Each flag carries the
evidence, how much less likely the result's reading is in the conservative image than its own reading, plus the
converse, in nats per crop. `protect_text` puts the conservative pixels back in the flagged boxes, feathered.

OCR is rapidocr (PP-OCR det/rec ONNX models bundled in its wheel, run by onnxruntime on the CPU); it is imported on
first use and loaded once per process. Measured: benchmarks/textguard.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

MIN_SCORE = 0.6  # mean character confidence one of the two images must reach (rapidocr's own text_score is 0.5).
#                 Texture read as text scores low: on tuning seeds 6, 8, 10 and 11 every line with differing readings
#                 below 0.4 was such a false flag (5 lines, 0.27-0.35), and the two between 0.4 and 0.7, both on seed
#                 11 (0.67, 0.69), were changes the guard missed with the 0.7 of 2026-11-28 (chosen on seeds 1-3)
MIN_EVIDENCE = 0.0  # nats per crop: the disagreement between the images needed for a flag (none: any set's differing
#                     readings flag the line)
# glyphs the recogniser hardly tells apart in many fonts: readings that differ only within these classes
CONFUSABLE = str.maketrans({"O": "0", "o": "0", "I": "1", "l": "1", "|": "1"})
CONFUSABLE_EVIDENCE = 0.5  # nats per crop: such a difference is flagged only when the images disagree this much.
#                           Below it the two readings are a near tie in each image, a coin toss the crops' geometry
#                           decides: on tuning seeds 6, 8, 9, 10 and 11, of the pooled flags that differ only so,
#                           those under 0.5 were 6 false, 1 ambiguous and 3 true; those over it 4 false, 9
#                           ambiguous and 38 true
MIN_HEIGHT = 8  # px (result): shorter text lines are not read
SETTLED_SCORE = 0.98  # a line the first crop set reads the same in both images, each with at least this mean
#                      confidence, is not read by the second set: on the tuning splits 1, 2, 3 and 5, 1,819 of 2,497
#                      lines (73 %); of the 83 flags the guard gave there, that drops 1, a false one
MARGINS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.38, 0.45)  # crops: the tight box extended by these shares of its height
# the two crop sets each line is read by: (moves of the estimated ink box, in shares of its height; margins, same unit)
CROP_SETS = ((((0, 0), (-0.08, 0), (0.08, 0), (0, -0.08), (0, 0.08)), MARGINS),
             (((0, 0), (-0.12, -0.12), (0.12, 0.12), (0.12, -0.12), (-0.12, 0.12)),
              (0.07, 0.12, 0.17, 0.22, 0.28, 0.34, 0.41, 0.5)))
SIDE_PAD = 0.1  # the crops are cut around the ink box widened by this share of its height on the left and right:
#                an edge placed inside the text cuts a glyph in every small-margin crop, which tips glyphs the OCR
#                hardly tells apart ("0"/"O", "1"/"I") one way or the other; extra background cuts nothing. On tuning
#                seeds 4 and 5 the ink box's left or right edge lies 2 px or more inside the text on 12 % and 11 % of
#                the lines, more than this pad inside on 2 % and 3 % (the median pad is 2 px)
# how far beyond the box they are cut around (reading_box) any crop of CROP_SETS reaches, in shares of its height
CROP_REACH = max(abs(v) for moves, _ in CROP_SETS for move in moves for v in move) + max(max(m) for _, m in CROP_SETS)
DETECTOR_PAD = (0.2, 0.3)  # the detector's box exceeds the ink by about this share of the ink's height (x, y)
INK_CONTRAST = 0.5  # ink pixels: further from the text's background colour than this share of the 97th
#                     percentile distance (half way to the ink's own colour)
INK_ROW_PIXELS = 2  # text rows: those holding at least this many ink pixels
BACKGROUND_RING = 0.1  # the text's background: the median colour this share of the ink's height around its estimate
MAX_INK_SHARE = 0.6  # text is never most of its box: more ink than this share of the estimate means the ring lay on
#                      the scene around a plate the detector boxed, and the estimate's own median is the background
#                      (tuning seeds 4 and 5: every line above 0.7, and 75-100 % of those at 0.6-0.7, had an edge off
#                      by more than 3 px; 10 % or fewer below 0.5)
INK_REACH = 2  # px: the columns that place the left and right edges are measured this near the ink pixels
COLUMN_TRUST = 0.3  # the columns measured replace the estimate from the detector's box within this share of its
#                     height (the detector's left and right edges are the less exact: a median error of 1-2 px)
ROW_TRUST = 0.2  # the rows measured replace the estimate from the detector's box only within this share of its
#                  height (photo backgrounds behind the text can still mislead the pixels)
PLATE_ROW_TRUST = 0.4  # ... and within this share when the detector boxed a plate (MAX_INK_SHARE): its box is then
#                        the plate's, not the text's padded, so the estimate from it is the less exact. On tuning
#                        seeds 11-14 this moved 17 of 3,155 lines' top or bottom; their readings stayed the same
#                        but for one false flag, gone ("Z118D"/"ZI18D": the plate's top edge 4 px above the ink)
MERGE_IOU = 0.3  # boxes found on both images that overlap this much are one box
# pieces of one line: the detector (or its two passes, or the two images) sometimes boxes a line in two overlapping
# pieces at a word space, or a word again inside its line; each piece's crops then cut a glyph at the join. Two boxes
# are one line when their tops and bottoms lie within LINE_ALIGN of the taller's height of each other and they
# overlap side by side by LINE_OVERLAP of the shorter's height, or when CONTAINED of one's area lies in the other.
# On tuning seeds 11-14 (3,155 lines) this joined 2 split strings (both then read whole and the same in both images,
# where their pieces had given 2 false flags) and 6 words inside their lines, and no two strings
LINE_ALIGN, LINE_OVERLAP, CONTAINED = 0.1, 0.25, 0.8
DETECT_TILE = 1536  # px: detection runs at full resolution on tiles of at most this size (memory)
DETECT_OVERLAP = 128
# the second, more sensitive detection pass for small and faint text: the image enlarged this many times (bicubic,
# tile by tile), with the detector's thresholds lowered to these (rapidocr's defaults: 0.3 and 0.5)
SENSITIVE_UPSCALE = 2
SENSITIVE_THRESH, SENSITIVE_BOX_THRESH = 0.2, 0.3
# text is looked for only where the images differ (`changed_windows`): in blocks of this size, grown by this margin,
# px; the whole image when the windows cover this share of it
WINDOW_BLOCK, WINDOW_MARGIN, WHOLE_IMAGE_SHARE = 32, 256, 0.5
NEW_LINE_OVERLAP = 0.2  # a box of the second pass is a new line when no first-pass box covers more of it than this
REC_HEIGHT = 48  # the recogniser's input height
REC_MIN_WIDTH = 320  # px: narrower crops are padded to this width, as rapidocr (and PP-OCR's training) pads them
REC_COLUMNS = 5120  # crops x width per recogniser call (memory: T = width / 8 steps x 18k classes each)
FLOOR = 1e-6  # probability given to a character outside a time step's 5 likeliest
PROTECT_PAD = 4  # px (result) added around a flagged box before it is put back
FEATHER = 3.0  # px: width of the soft edge of a put-back box

Box = tuple[int, int, int, int]


@dataclass
class TextFlag:
    box: Box  # x0, y0, x1, y1 (exclusive), in result pixels: the detected text line
    before: str  # the reading of the conservative image
    after: str  # the reading of the result
    before_score: float  # mean character confidence of each reading, 0..1
    after_score: float
    evidence: float = 0.0  # nats per crop by which the two images disagree (0 when the readings are the same)

    def to_wire(self) -> dict[str, Any]:
        return {"kind": "text", "box": [int(v) for v in self.box], "before": self.before, "after": self.after,
                "before_score": round(float(self.before_score), 4), "after_score": round(float(self.after_score), 4),
                "evidence": round(float(self.evidence), 3)}


class _Ocr:
    """rapidocr's detector and recogniser, loaded once."""

    _lock = threading.Lock()
    _instance: _Ocr | None = None

    def __init__(self) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as exc:
            raise RuntimeError("the text guard needs the OCR package 'rapidocr' (with onnxruntime), which is not "
                               "installed: pip install rapidocr") from exc
        params: dict[str, Any] = {"Global.log_level": "error", "Det.limit_type": "max",
                                  "Det.limit_side_len": DETECT_TILE}
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = int(threads)
            params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
        engine = RapidOCR(params=params)
        self.detector = engine._load_det_model()
        self.sensitive_detector = RapidOCR(params={**params, "Det.thresh": SENSITIVE_THRESH,
                                                   "Det.box_thresh": SENSITIVE_BOX_THRESH})._load_det_model()
        recognizer = engine._load_rec_model()
        self.rec_session = recognizer.session
        self.characters: list[str] = list(recognizer.postprocess_op.character)  # 0 is the CTC blank
        self.index = {c: i for i, c in enumerate(self.characters) if i > 0}
        self.run_lock = threading.Lock()  # rapidocr's detector keeps per-call state

    @classmethod
    def get(cls) -> _Ocr:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def detect(self, bgr: np.ndarray, sensitive: bool = False) -> list[Box]:
        """Axis-aligned boxes of the text lines, tile by tile; at full resolution, or (`sensitive`) enlarged
        SENSITIVE_UPSCALE times with lower thresholds, which finds small and faint lines the first pass misses."""
        factor = SENSITIVE_UPSCALE if sensitive else 1
        detector = self.sensitive_detector if sensitive else self.detector
        size, overlap = DETECT_TILE // factor, DETECT_OVERLAP // factor
        h, w = bgr.shape[:2]
        boxes: list[Box] = []
        for y in range(0, max(h - overlap, 1), size - overlap):
            for x in range(0, max(w - overlap, 1), size - overlap):
                tile = np.ascontiguousarray(bgr[y:y + size, x:x + size])
                if factor > 1:
                    tile = cv2.resize(tile, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
                with self.run_lock:
                    found = detector(tile)
                if found.boxes is None:
                    continue
                for quad in np.asarray(found.boxes) / factor:
                    x0, y0 = (int(v) for v in np.floor(quad.min(axis=0)))
                    x1, y1 = (int(v) for v in np.ceil(quad.max(axis=0)))
                    boxes.append((max(0, x + x0), max(0, y + y0), min(w, x + x1), min(h, y + y1)))
        return merge_boxes(boxes)

    def posteriors(self, crops: list[np.ndarray]) -> list[Posterior]:
        """Per crop (BGR uint8), the recogniser's character probabilities. Each crop is scaled to REC_HEIGHT (aspect
        kept) and padded to REC_MIN_WIDTH when narrower, and batched only with crops of its own width, so that its
        reading does not depend on the crops read with it. Reading unpadded would be 2.3x faster, but measured on
        4,680 crops of the tuning splits' strings it read 85.4 % of them exactly against 86.2 % padded, and on 60
        tuning scenes the guard then caught 2 of 7 changes against 4 of 7."""
        read: dict[int, Posterior] = {}
        by_width: dict[int, list[int]] = {}
        for i, crop in enumerate(crops):
            by_width.setdefault(max(1, int(np.ceil(REC_HEIGHT * crop.shape[1] / crop.shape[0]))), []).append(i)
        for w, members in by_width.items():
            width = max(w, REC_MIN_WIDTH)
            per_call = max(1, REC_COLUMNS // width)
            for start in range(0, len(members), per_call):
                part = members[start:start + per_call]
                batch = np.zeros((len(part), 3, REC_HEIGHT, width), np.float32)
                for k, i in enumerate(part):
                    resized = cv2.resize(crops[i], (w, REC_HEIGHT)).astype(np.float32) / 127.5 - 1.0
                    batch[k, :, :, :w] = resized.transpose(2, 0, 1)
                probs = self.rec_session(batch)
                steps = max(1, int(np.ceil(probs.shape[1] * w / width)))  # the padding reads as blanks: cut off
                for i, p in zip(part, probs, strict=True):
                    read[i] = Posterior.of(p[:steps], self.characters)
        return [read[i] for i in range(len(crops))]  # in the crops' order


@dataclass
class Posterior:
    """One crop's reading: the best path, and the probabilities of the few characters that matter (the 5 likeliest
    at any time step, and the blank); any other character counts as FLOOR."""

    text: str
    score: float  # mean confidence of the best path's characters (0 when it is empty)
    columns: dict[int, int]  # character index -> column of probs
    probs: np.ndarray  # T x len(columns) float32

    @classmethod
    def of(cls, probs: np.ndarray, characters: list[str]) -> Posterior:
        best = probs.argmax(axis=1)
        keep = np.ones(len(best), bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        text = "".join(characters[i] for i in best[keep])
        score = float(probs.max(axis=1)[keep].mean()) if keep.any() else 0.0
        top = np.unique(np.concatenate(([0], np.argpartition(probs, -5, axis=1)[:, -5:].ravel())))
        return cls(text, score, {int(c): i for i, c in enumerate(top)}, np.ascontiguousarray(probs[:, top]))


def ocr() -> _Ocr:
    """The process-wide OCR engine (loaded on first call; RuntimeError naming the package when it is missing)."""
    return _Ocr.get()


def ctc_log_likelihood(probs: np.ndarray, labels: list[int]) -> float:
    """log P(labels | probs) under CTC (blank = 0) for one T x C probability matrix (reference implementation)."""
    return float(log_likelihoods([Posterior("", 0.0, {c: c for c in range(probs.shape[1])}, probs)], [labels])[0, 0])


def log_likelihoods(posteriors: list[Posterior], labels: list[list[int]]) -> np.ndarray:
    """log P(labels[k] | posteriors[n]) under CTC (blank = 0), as an N x K array, by one forward pass over all of
    them (shorter crops padded with certain blanks, which leaves every likelihood as it is)."""
    steps = max(p.probs.shape[0] for p in posteriors)
    states = 2 * max(len(lab) for lab in labels) + 1
    ext = np.zeros((len(labels), states), int)
    for k, lab in enumerate(labels):
        ext[k, 1:2 * len(lab):2] = lab
    logp = np.full((len(posteriors), steps, len(labels), states), -1e30, np.float32)
    for n, post in enumerate(posteriors):
        table = np.log(np.maximum(post.probs, FLOOR))
        floor = np.full((len(table), 1), np.log(FLOOR), np.float32)
        table = np.concatenate((table, floor), axis=1)  # the last column: any character not kept
        columns = np.vectorize(lambda c, cols=post.columns: cols.get(int(c), -1))(ext) if ext.size else ext
        logp[n, :len(table)] = table[:, columns]
        logp[n, len(table):] = np.where(ext == 0, 0.0, -1e30)  # padding: certain blanks
    skip = np.zeros(ext.shape, bool)
    skip[:, 2:] = (ext[:, 2:] != 0) & (ext[:, 2:] != ext[:, :-2])
    alpha = np.full((len(posteriors), len(labels), states), -np.inf, np.float32)
    alpha[..., :2] = logp[:, 0, :, :2]
    for t in range(1, steps):
        one = np.concatenate((np.full(alpha.shape[:2] + (1,), -np.inf, np.float32), alpha[..., :-1]), axis=2)
        two = np.concatenate((np.full(alpha.shape[:2] + (2,), -np.inf, np.float32), alpha[..., :-2]), axis=2)
        alpha = np.logaddexp(np.logaddexp(alpha, one), np.where(skip, two, -np.inf)) + logp[:, t]
    ends = np.array([2 * len(lab) for lab in labels])
    last = np.take_along_axis(alpha, ends[None, :, None], axis=2)[..., 0]
    before_last = np.take_along_axis(alpha, np.maximum(ends - 1, 0)[None, :, None], axis=2)[..., 0]
    return np.where(ends > 0, np.logaddexp(last, before_last), last).astype(np.float64)


def iou(a: Box, b: Box) -> float:
    inter = overlap(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def merge_boxes(boxes: list[Box], joins: Callable[[Box, Box], bool] | None = None) -> list[Box]:
    """Boxes that overlap by MERGE_IOU or more (or that `joins` says belong together) become their union, until
    none do; sorted top to bottom, then left to right."""
    merged = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    joins = joins or (lambda a, b: iou(a, b) >= MERGE_IOU)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                if joins(merged[i], merged[j]):
                    a, b = merged[i], merged.pop(j)
                    merged[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    changed = True
                    break
            if changed:
                break
    return sorted(merged, key=lambda b: (b[1], b[0]))


def result_scale(source: np.ndarray, result: np.ndarray) -> int:
    """The integer factor between source and result (ValueError naming what is wrong)."""
    for name, image in (("source", source), ("result", result)):
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
            shape = getattr(image, "shape", type(image).__name__)
            raise ValueError(f"{name} must be an H x W x 3 array, got shape {shape}")
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"{name} is empty ({image.shape[1]}x{image.shape[0]})")
    (h, w), (rh, rw) = source.shape[:2], result.shape[:2]
    if rh % h or rw % w or rh // h != rw // w:
        raise ValueError(f"result {rw}x{rh} is not the source {w}x{h} scaled by one integer factor")
    return rh // h


def conservative(source: np.ndarray, scale: int) -> np.ndarray:
    """What the result falls back to: the input itself, or its bicubic upscale."""
    image = np.asarray(source, np.float32)
    if scale == 1:
        return image
    h, w = image.shape[:2]
    return np.clip(cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def to_bgr8(image: np.ndarray) -> np.ndarray:
    rgb8 = (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(rgb8[..., ::-1])


def padded(box: Box, pad: int, shape: tuple[int, ...], vertical: int | None = None) -> Box:
    """`box` grown by `pad` px on the left and right and by `vertical` (default: `pad`) above and below, within
    `shape`."""
    v = pad if vertical is None else vertical
    return max(0, box[0] - pad), max(0, box[1] - v), min(shape[1], box[2] + pad), min(shape[0], box[3] + v)


def tight(box: Box) -> Box:
    """The ink's box estimated from a detected box (the detector pads by DETECTOR_PAD of the ink's height)."""
    ink = (box[3] - box[1]) / (1 + 2 * DETECTOR_PAD[1])
    dx, dy = round(DETECTOR_PAD[0] * ink), round(DETECTOR_PAD[1] * ink)
    x0, x1 = (box[0] + dx, box[2] - dx) if box[2] - box[0] > 2 * dx + 1 else (box[0], box[2])
    return x0, box[1] + dy, x1, box[3] - dy


def ink_box(image: np.ndarray, box: Box) -> Box:
    """The ink's box of the text line the detector boxed in `image` (BGR uint8): `tight(box)`, with each edge moved to
    where the pixels show the ink's edge when that lies near it (top and bottom within ROW_TRUST of its height, left
    and right within COLUMN_TRUST).

    Ink: the pixels of the detector's box further from the background than INK_CONTRAST of the strongest difference
    within the estimated ink box, where the background is the median colour of a thin ring around that estimate
    (BACKGROUND_RING: the plate or the photo right behind the letters, not what lies at the detector box's border,
    which is often the scene around a plate), and blobs that touch the detector box's border (the scene around a
    plate, a neighbouring line) left out. When that ink covers more than MAX_INK_SHARE of the estimate, the ring lay
    on the scene around a plate the detector boxed tightly: the estimate's own median colour is the background, and
    the rows measured are trusted further (PLATE_ROW_TRUST). Top and bottom: the first and last rows holding
    INK_ROW_PIXELS ink pixels, less and plus one pixel. Left and right: within those rows and near the ink, where
    each column's strongest difference first reaches INK_CONTRAST of the strongest, from either side, to a tenth of
    a pixel (a blurred edge is half way up its ramp where the sharp edge was), less and plus one pixel. The crops
    that read the line are cut around this box, so its place decides what the recogniser sees; the detector's own
    padding varies by several pixels from line to line. Measured on tuning seeds 4 and 5 (875 lines on one string
    each) against each string's rendered pixels' box: all four edges within a pixel on 71 % and 75 % of the lines,
    an edge more than 3 px off on 13 % and 11 % (without the MAX_INK_SHARE fallback: 68 % and 71 %, 16 % on both;
    with the detector box's border for background and no blobs left out: 49 % and 51 %; from the detector's box
    alone: 15 % on seed 5)."""
    estimate = tight(box)
    x0, y0, x1, y1 = box
    patch = image[y0:y1, x0:x1].astype(np.float32)
    if patch.shape[0] < 3 or patch.shape[1] < 3:
        return estimate
    height = estimate[3] - estimate[1]
    inner = grown(estimate, box, 0)
    ring = around(estimate, box, max(1, round(BACKGROUND_RING * height)))
    if not ring.any():
        return estimate
    row_trust = ROW_TRUST
    for background in (np.median(patch[ring], axis=0), np.median(patch[inner].reshape(-1, 3), axis=0)):
        distance = np.abs(patch - background).max(axis=2)
        strongest = float(np.percentile(distance[inner], 97))
        if strongest <= 0:
            return estimate
        ink = inside_blobs((distance > INK_CONTRAST * strongest).astype(np.uint8))
        if ink[inner].mean() <= MAX_INK_SHARE:
            break
        row_trust = PLATE_ROW_TRUST  # a plate: its box, not the text's, is what the estimate came from
    rows = np.flatnonzero(ink.sum(axis=1) >= INK_ROW_PIXELS)
    if len(rows) == 0:
        return estimate
    top, bottom = y0 + int(rows[0]) - 1, y0 + int(rows[-1]) + 2  # one pixel of margin, as a tight box has
    top = top if abs(top - estimate[1]) <= row_trust * height else estimate[1]
    bottom = bottom if abs(bottom - estimate[3]) <= row_trust * height else estimate[3]
    near = cv2.dilate(ink, np.ones((2 * INK_REACH + 1, 2 * INK_REACH + 1), np.uint8))
    columns = (distance * near)[max(0, top - y0):max(1, bottom - y0)].max(axis=0) / strongest
    left, right = estimate[0], estimate[2]
    first, last = rising(columns, INK_CONTRAST), rising(columns[::-1], INK_CONTRAST)
    if first is not None and last is not None:
        found_left, found_right = x0 + int(np.floor(first + 0.5)) - 1, x1 + int(np.ceil(0.5 - last))
        left = found_left if abs(found_left - left) <= COLUMN_TRUST * height else left
        right = found_right if abs(found_right - right) <= COLUMN_TRUST * height else right
    return left, top, right, bottom


def reading_box(image: np.ndarray, box: Box) -> Box:
    """The box a detected line's crops are cut around: its `ink_box` in `image`, widened by SIDE_PAD of its height
    on the left and right (within the image)."""
    return widened(ink_box(image, box), image.shape)


def widened(ink: Box, shape: tuple[int, ...]) -> Box:
    """An ink box widened by SIDE_PAD of its height on the left and right, within `shape`."""
    return padded(ink, round(SIDE_PAD * (ink[3] - ink[1])), shape, vertical=0)


def grown(estimate: Box, box: Box, grow: int) -> tuple[slice, slice]:
    """`estimate` grown by `grow` px on each side, as (rows, columns) slices of `box`'s pixels."""
    x0, y0 = box[0], box[1]
    return (slice(max(0, estimate[1] - y0 - grow), max(0, estimate[3] - y0 + grow)),
            slice(max(0, estimate[0] - x0 - grow), max(0, estimate[2] - x0 + grow)))


def around(estimate: Box, box: Box, width: int) -> np.ndarray:
    """A mask over `box`'s pixels: the ring from one pixel outside `estimate` to `width` px outside it."""
    ring = np.zeros((box[3] - box[1], box[2] - box[0]), bool)
    ring[grown(estimate, box, width)] = True
    ring[grown(estimate, box, 1)] = False
    return ring


def inside_blobs(mask: np.ndarray) -> np.ndarray:
    """`mask` (uint8) less its 8-connected blobs that touch its border; all of it when every blob does."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    h, w = mask.shape
    x, y, bw, bh = stats[:, 0], stats[:, 1], stats[:, 2], stats[:, 3]
    keep = ~((x == 0) | (y == 0) | (x + bw >= w) | (y + bh >= h))
    keep[0] = False
    return keep[labels].astype(np.uint8) if keep.any() else mask


def rising(profile: np.ndarray, level: float) -> float | None:
    """Where `profile` first reaches `level`, interpolated linearly between samples (None when it never does)."""
    above = np.flatnonzero(profile >= level)
    if len(above) == 0:
        return None
    i = int(above[0])
    if i == 0 or profile[i] <= profile[i - 1]:
        return float(i)
    return i - 1 + float((level - profile[i - 1]) / (profile[i] - profile[i - 1]))


def shifted(box: Box, moves: tuple[tuple[float, float], ...]) -> list[Box]:
    """Copies of `box` moved by `moves` (dx, dy in shares of its height)."""
    h = box[3] - box[1]
    pixels = [(round(dx * h), round(dy * h)) for dx, dy in moves]
    return [(box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy) for dx, dy in pixels]


def same_text(a: str, b: str) -> bool:
    return "".join(a.split()) == "".join(b.split())


def same_letters(a: str, b: str) -> bool:
    """The same letters and digits in the same order: the readings differ at most in punctuation ("-", ".", "'")."""
    return [c for c in a if c.isalnum()] == [c for c in b if c.isalnum()]


def read_box(base: np.ndarray, out: np.ndarray, box: Box, inks: list[Box],
             margins: tuple[float, ...] = MARGINS) -> TextFlag:
    """Both readings of one text line (BGR uint8 images of the same size), from crops around each box of `inks`
    (the text's estimated tight box; several when its place is known less exactly) with each of `margins`."""
    return reading_of(box, *read_sides(base, out, cuts_around(inks, margins, out.shape)))


def cuts_around(inks: list[Box], margins: tuple[float, ...], shape: tuple[int, ...]) -> list[Box]:
    """Each box of `inks` extended by each of `margins` (shares of its height, at least 1 px), within `shape`."""
    return [padded(ink, max(1, round(m * (ink[3] - ink[1]))), shape) for ink in inks for m in margins]


def read_sides(base: np.ndarray, out: np.ndarray, cuts: list[Box]) -> tuple[list[Posterior], list[Posterior]]:
    """The same cuts read in both images: the conservative image's posteriors, then the result's."""
    posteriors = ocr().posteriors([base[y0:y1, x0:x1] for x0, y0, x1, y1 in cuts] +
                                  [out[y0:y1, x0:x1] for x0, y0, x1, y1 in cuts])
    return posteriors[:len(cuts)], posteriors[len(cuts):]


def candidates_of(posteriors: list[Posterior]) -> tuple[list[str], np.ndarray]:
    """The candidate strings (any crop's greedy reading) and their CTC log-likelihoods under every crop, a
    len(posteriors) x candidates array."""
    candidates = sorted({p.text for p in posteriors})
    index = ocr().index
    return candidates, log_likelihoods(posteriors, [[index[ch] for ch in c if ch in index] for c in candidates])


def reading_of(box: Box, before: list[Posterior], after: list[Posterior]) -> TextFlag:
    """Both readings of a line from its crops' posteriors in each image (the same cuts, or the same sets of cuts,
    on both sides), by `decide`; each image's score is its crops' mean confidence."""
    candidates, ll = candidates_of(before + after)
    return decide(box, candidates, ll[:len(before)].mean(axis=0), ll[len(before):].mean(axis=0),
                  float(np.mean([p.score for p in before])), float(np.mean([p.score for p in after])))


def decide(box: Box, candidates: list[str], ll_before: np.ndarray, ll_after: np.ndarray, before_score: float,
           after_score: float) -> TextFlag:
    """Each image's reading: the candidate with the highest mean log-likelihood over its cuts (`ll_before`,
    `ll_after`, one per candidate); the evidence, when they differ, is how much less likely each image finds the
    other's reading."""
    b, a = int(np.argmax(ll_before)), int(np.argmax(ll_after))
    evidence = 0.0
    if not same_text(candidates[b], candidates[a]):
        evidence = float(ll_before[b] - ll_before[a] + ll_after[a] - ll_after[b])
    return TextFlag(box, candidates[b].strip(), candidates[a].strip(), before_score, after_score, evidence)


def read_line(base: np.ndarray, out: np.ndarray, box: Box) -> TextFlag:
    """Both readings of one detected line, by the crops of CROP_SETS (the second set only when the first is not
    `settled`), decided by `pool`. A line whose pixels, as far as any crop reaches, are the same in both images
    cannot read differently: it is not read (empty readings), which makes the guard nearly free where a task left
    the text alone (restore, faces, a selection elsewhere)."""
    return read_around(base, out, box, reading_box(out, box))


def read_around(base: np.ndarray, out: np.ndarray, box: Box, reading: Box) -> TextFlag:
    """`read_line`'s readings of the line `box` from crops cut around `reading` (its `reading_box`, or, in the
    benchmark, a string's true ink box `widened`)."""
    x0, y0, x1, y1 = padded(reading, int(np.ceil(CROP_REACH * (reading[3] - reading[1]))) + 1, out.shape)
    if np.array_equal(base[y0:y1, x0:x1], out[y0:y1, x0:x1]):
        return TextFlag(box, "", "", 0.0, 0.0)
    sides: list[tuple[list[Posterior], list[Posterior]]] = []
    for moves, margins in CROP_SETS:
        sides.append(read_sides(base, out, cuts_around(shifted(reading, moves), margins, out.shape)))
        if len(sides) == 1 and settled(first := reading_of(box, *sides[0])):
            return first
    return pool(box, sides)


def settled(reading: TextFlag) -> bool:
    """Both images read the same, each with a mean confidence of at least SETTLED_SCORE: no other crop set is
    needed to decide that the line did not change."""
    return same_text(reading.before, reading.after) and min(reading.before_score, reading.after_score) >= SETTLED_SCORE


def pool(box: Box, sides: list[tuple[list[Posterior], list[Posterior]]]) -> TextFlag:
    """One line's readings from several crop sets' posteriors (per set: the conservative image's, the result's):
    each image's reading is the candidate likeliest over every set's crops together, so a glyph that one set's
    crops tip weakly one way and the other's firmly the other way reads as the firm majority, not as a change.
    Readings that differ only in punctuation count only when every set alone sees it: a hyphen or a dot is a few
    pixels, which one set's crops keep and the other's lose (on the tuning splits no change the reference found
    was one of punctuation alone)."""
    pooled = reading_of(box, [p for before, _ in sides for p in before], [p for _, after in sides for p in after])
    return punctuation_checked(pooled, lambda: [reading_of(box, before, after) for before, after in sides])


def punctuation_checked(pooled: TextFlag, own: Callable[[], list[TextFlag]]) -> TextFlag:
    """`pooled`, unless its readings differ in punctuation alone and one of the crop sets' `own` readings (asked
    for only then) does not see that difference: then that set's reading."""
    if changed(pooled) and same_letters(pooled.before, pooled.after):
        return next((r for r in own() if not changed(r)), pooled)
    return pooled


def read_text(source: np.ndarray, result: np.ndarray) -> list[TextFlag]:
    """Every text line found, with its two readings (flagged or not); text_flags keeps the changed ones."""
    scale = result_scale(source, result)
    engine = ocr()
    base, out = to_bgr8(conservative(source, scale)), to_bgr8(result)
    return [read_line(base, out, box) for box in find_lines(engine, base, out)]


def find_lines(engine: _Ocr, base: np.ndarray, out: np.ndarray) -> list[Box]:
    """The text lines of both images where they differ: `lines_in` each of `changed_windows` (the whole image when
    the task changed most of it, as an upscale does; nothing when it changed nothing), boxes in image pixels."""
    found: list[Box] = []
    for x0, y0, x1, y1 in changed_windows(base, out):
        found += [(a + x0, b + y0, c + x0, d + y0)
                  for a, b, c, d in lines_in(engine, base[y0:y1, x0:x1], out[y0:y1, x0:x1])]
    return found


def lines_in(engine: _Ocr, base: np.ndarray, out: np.ndarray) -> list[Box]:
    """The text lines of both images: the first pass's boxes and those of the sensitive pass that no first-pass box
    covers (small or faint lines; a line the first pass found keeps its box, so its reading does not change), with
    the pieces of `one_line` joined."""
    def found(sensitive: bool) -> list[Box]:
        boxes = merge_boxes(engine.detect(out, sensitive) + engine.detect(base, sensitive))
        return [b for b in boxes if b[3] - b[1] >= MIN_HEIGHT]

    first = found(sensitive=False)
    new = [b for b in found(sensitive=True) if all(overlap(b, f) <= NEW_LINE_OVERLAP * area(b) for f in first)]
    return merge_boxes(first + new, joins=lambda a, b: iou(a, b) >= MERGE_IOU or one_line(a, b))


def one_line(a: Box, b: Box) -> bool:
    """Two boxes are pieces of one text line: level with each other (tops and bottoms within LINE_ALIGN of the
    taller's height) and overlapping side by side by LINE_OVERLAP of the shorter's height, or one mostly inside the
    other (CONTAINED of its area)."""
    if overlap(a, b) >= CONTAINED * min(area(a), area(b)):
        return True
    taller, shorter = max(a[3] - a[1], b[3] - b[1]), min(a[3] - a[1], b[3] - b[1])
    return (abs(a[1] - b[1]) <= LINE_ALIGN * taller and abs(a[3] - b[3]) <= LINE_ALIGN * taller
            and min(a[2], b[2]) - max(a[0], b[0]) >= LINE_OVERLAP * shorter)


def changed_windows(base: np.ndarray, out: np.ndarray) -> list[Box]:
    """Where text must be looked for: the pixels that differ between the two images (BGR uint8, same shape), in
    blocks of WINDOW_BLOCK px, grown by WINDOW_MARGIN px (a line that changed in part is found whole when it reaches
    no further than that beyond the change) and boxed, touching boxes joined. The whole image when the boxes cover
    WHOLE_IMAGE_SHARE of it or more; none when nothing changed. A restoration or a face touches a few regions of a
    photo: detection, which would otherwise cost the most there, then runs on those alone."""
    h, w = out.shape[:2]
    diff = np.any(base != out, axis=2)
    if not diff.any():
        return []
    rows, cols = -(-h // WINDOW_BLOCK), -(-w // WINDOW_BLOCK)
    grid = np.zeros((rows * WINDOW_BLOCK, cols * WINDOW_BLOCK), bool)
    grid[:h, :w] = diff
    blocks = grid.reshape(rows, WINDOW_BLOCK, cols, WINDOW_BLOCK).any(axis=(1, 3)).astype(np.uint8)
    reach = -(-WINDOW_MARGIN // WINDOW_BLOCK)
    blocks = cv2.dilate(blocks, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(blocks, connectivity=8)
    windows = [(int(x) * WINDOW_BLOCK, int(y) * WINDOW_BLOCK, min(w, int(x + bw) * WINDOW_BLOCK),
                min(h, int(y + bh) * WINDOW_BLOCK)) for x, y, bw, bh, _ in stats[1:count]]
    windows = merge_boxes(windows, joins=lambda a, b: overlap(a, b) > 0)  # components' boxes can still overlap
    if sum(area(win) for win in windows) >= WHOLE_IMAGE_SHARE * h * w:
        return [(0, 0, w, h)]
    return windows


def overlap(a: Box, b: Box) -> int:
    """The area two boxes share, px."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def changed(flag: TextFlag, min_score: float = MIN_SCORE, min_evidence: float = MIN_EVIDENCE) -> bool:
    """The readings differ (spaces aside), one of them is confident, and the images disagree enough: by
    `min_evidence`, and by CONFUSABLE_EVIDENCE when they differ only in glyphs hardly told apart ("0"/"O", "1"/"l")."""
    return (not same_text(flag.before, flag.after) and max(flag.before_score, flag.after_score) >= min_score
            and flag.evidence >= min_evidence
            and (flag.evidence >= CONFUSABLE_EVIDENCE or not only_confusable(flag.before, flag.after)))


def only_confusable(a: str, b: str) -> bool:
    """The readings are the same but for glyphs of the CONFUSABLE classes ("O0o", "1Il|"), spaces aside."""
    return same_text(a.translate(CONFUSABLE), b.translate(CONFUSABLE))


def text_flags(source: np.ndarray, result: np.ndarray) -> list[TextFlag]:
    """Text lines whose reading differs between the conservative image and the result, boxes in result pixels.

    `source` is the task's input (H x W x 3 float32 sRGB in [0, 1]), `result` the task's output at 1x, 2x or 4x
    (any integer factor) of its size."""
    return [flag for flag in read_text(source, result) if changed(flag)]


def protect_text(source: np.ndarray, result: np.ndarray, flags: list[TextFlag]) -> np.ndarray:
    """The result with each flagged box (padded by PROTECT_PAD) replaced by the conservative image, feathered over
    FEATHER px outside it; same shape and dtype as `result`."""
    scale = result_scale(source, result)
    out = np.array(result, copy=True)
    if not flags:
        return out
    h, w = result.shape[:2]
    outside = np.ones((h, w), np.uint8)
    for flag in flags:
        x0, y0, x1, y1 = padded(flag.box, PROTECT_PAD, result.shape)
        outside[y0:y1, x0:x1] = 0
    # weight 1 inside the boxes, falling to 0 at FEATHER px outside them
    weight = np.clip(1.0 - cv2.distanceTransform(outside, cv2.DIST_L2, 5) / FEATHER, 0.0, 1.0)
    near = weight > 0
    base = conservative(source, scale)[near]
    blend = weight[near][:, None]
    out[near] = (base * blend + np.asarray(result, np.float32)[near] * (1.0 - blend)).astype(result.dtype)
    return out
