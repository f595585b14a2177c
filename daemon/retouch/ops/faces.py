"""Faces: where they are (so every task can touch them more lightly) and the soft mask that blends them.

Detector: MTCNN (Zhang et al. 2016), three small cascaded CNNs (P-Net proposes on an image pyramid, R-Net and O-Net
refine), 0.5 M parameters, MIT-licensed weights vendored as ONNX in `retouch/models/faces/` (provenance, export and
measurements: `models/faces/FACES.md`). onnxruntime runs them on the CPU (6-9x faster than torch here for these
small convolutions); loaded once, lazily. Large images are searched on a copy whose longer side is at most
`DETECT_SIDE`, and the boxes mapped back.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

MODELS = Path(__file__).resolve().parent.parent / "models" / "faces"
DETECT_SIDE = 1600  # px: the longer side of the copy searched; faces smaller than MIN_FACE there are not found
MIN_FACE = 20  # px at the searched size (the pyramid's largest scale maps it onto P-Net's 12 px window)
PYRAMID_STEP = 0.709  # area halves every two pyramid levels
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net face probability to pass a stage
MIN_SCORE = 0.9  # O-Net probability for a face to be reported
BATCH = 256  # R-Net / O-Net crops per run


Point = tuple[float, float]


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), pixels of the image given
    score: float  # O-Net face probability, 0..1
    # O-Net's five landmarks (x, y in pixels of the image given): left eye, right eye (as seen), nose tip, left and
    # right mouth corner; what `facealign` aligns faces by
    landmarks: tuple[Point, Point, Point, Point, Point] | None = None

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    def to_wire(self) -> dict:
        return {"kind": "face", "box": list(self.box), "score": round(float(self.score), 4)}


# ---------------------------------------------------------------- the three nets


class _Mtcnn:
    """The three ONNX sessions; each maps N x 3 x H x W (RGB, (x - 127.5) / 128) to (face probability, box shift)."""

    def __init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        self.pnet, self.rnet, self.onet = (
            ort.InferenceSession(str(MODELS / f"mtcnn-{name}.onnx"), opts, providers=["CPUExecutionProvider"])
            for name in ("pnet", "rnet", "onet")
        )

    @staticmethod
    def run(session: Any, batch: np.ndarray) -> list[np.ndarray]:
        """N x H x W x 3 in 0..255 through one net (sessions are thread-safe): face probability, box shift and, for
        O-Net, the landmarks (N x 10: five x then five y, fractions of the crop)."""
        x = np.ascontiguousarray(((batch - 127.5) * 0.0078125).transpose(0, 3, 1, 2), dtype=np.float32)
        return session.run(None, {"image": x})


_LOCK = threading.Lock()
_MODEL: _Mtcnn | None = None


def _model() -> _Mtcnn:
    global _MODEL
    if _MODEL is None:
        with _LOCK:
            if _MODEL is None:
                _MODEL = _Mtcnn()
    return _MODEL


# ---------------------------------------------------------------- box arithmetic (N x 4: x1, y1, x2, y2)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression; overlap is IoU, or intersection over the smaller box."""
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _regress(boxes: np.ndarray, reg: np.ndarray, plus_one: bool = True) -> np.ndarray:
    extent = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + extent
    h = boxes[:, 3] - boxes[:, 1] + extent
    return boxes + reg * np.stack([w, h, w, h], axis=1)


def _square(boxes: np.ndarray) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) / 2
    y1 = boxes[:, 1] + (h - side) / 2
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


# ---------------------------------------------------------------- the three stages


def _propose(model: _Mtcnn, image: np.ndarray) -> np.ndarray:
    """P-Net over the pyramid: squared candidate boxes (N x 4). Coordinates are MTCNN's 1-based ones."""
    h, w = image.shape[:2]
    scale, found = 12.0 / MIN_FACE, []
    while min(h, w) * scale >= 12:
        level = cv2.resize(image, (int(w * scale + 1), int(h * scale + 1)), interpolation=cv2.INTER_AREA)
        prob, reg = model.run(model.pnet, level[None])[:2]
        prob, reg = prob[0], reg[0]
        ys, xs = np.nonzero(prob >= STAGE_THRESHOLDS[0])
        if ys.size:
            corner = np.stack([xs, ys], axis=1).astype(np.float64) * 2
            boxes = np.concatenate([np.floor((corner + 1) / scale), np.floor((corner + 12) / scale)], axis=1)
            scores = prob[ys, xs].astype(np.float64)
            cand = np.concatenate([boxes, scores[:, None], reg[:, ys, xs].T.astype(np.float64)], axis=1)
            found.append(cand[_nms(boxes, scores, 0.5)])
        scale *= PYRAMID_STEP
    if not found:
        return np.zeros((0, 4))
    cand = np.concatenate(found)
    cand = cand[_nms(cand[:, :4], cand[:, 4], 0.7)]
    return _square(_regress(cand[:, :4], cand[:, 5:9], plus_one=False))


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Each box cut out of the image (zero outside it), resized to size x size: N x size x size x 3 float32."""
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(np.trunc(boxes).astype(np.int64) - 1):  # 1-based inclusive -> 0-based
        bw, bh = x2 - x1 + 1, y2 - y1 + 1
        if bw < 2 or bh < 2:
            continue
        patch = np.zeros((bh, bw, 3), np.float32)
        sx0, sy0, sx1, sy1 = max(x1, 0), max(y1, 0), min(x2 + 1, w), min(y2 + 1, h)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y1 : sy1 - y1, sx0 - x1 : sx1 - x1] = image[sy0:sy1, sx0:sx1]
        out[i] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return out


def _classify(model: _Mtcnn, session: Any, image: np.ndarray, boxes: np.ndarray, size: int) -> list[np.ndarray]:
    """R-Net or O-Net on each box's crop: face probability (N), box regression (N x 4) and, for O-Net, landmarks
    (N x 10)."""
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(boxes), BATCH):
        outputs = model.run(session, _crops(image, boxes[start : start + BATCH], size))
        parts = parts or [[] for _ in outputs]
        for part, output in zip(parts, outputs, strict=True):
            part.append(output.astype(np.float64))
    return [np.concatenate(part) for part in parts]


def _mtcnn(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Faces of an H x W x 3 float32 image in 0..255: boxes (N x 4: x0 y0 x1 y1, 0-based, exclusive), scores (N)
    and landmarks (N x 5 x 2, 0-based pixel coordinates)."""
    model = _model()
    boxes = _propose(model, image)
    if len(boxes):
        prob, reg = _classify(model, model.rnet, image, boxes, 24)
        passed = prob > STAGE_THRESHOLDS[1]
        boxes, prob, reg = boxes[passed], prob[passed], reg[passed]
        keep = _nms(boxes, prob, 0.7)
        boxes = _square(_regress(boxes[keep], reg[keep]))
    if not len(boxes):
        return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
    prob, reg, points = _classify(model, model.onet, image, boxes, 48)
    passed = prob > STAGE_THRESHOLDS[2]
    boxes, prob, reg, points = boxes[passed], prob[passed], reg[passed], points[passed]
    extent = boxes[:, 2:4] - boxes[:, 0:2] + 1  # the crop O-Net saw (1-based, inclusive), which the points are of
    marks = np.stack([points[:, :5], points[:, 5:]], axis=2) * extent[:, None, :] + boxes[:, None, 0:2] - 1
    boxes = _regress(boxes, reg)
    keep = _nms(boxes, prob, 0.7, by_min=True)
    return boxes[keep] - np.array([1.0, 1.0, 0.0, 0.0]), prob[keep], marks[keep]


# ---------------------------------------------------------------- public API


def _checked(image: np.ndarray) -> np.ndarray:
    """The image as H x W or H x W x 1/3 (alpha dropped), float32 or uint8/uint16; ValueError naming the problem."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"detect_faces takes a numpy array, not {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] in (1, 3, 4):
        image = image[..., :3]
    elif image.ndim != 2:
        raise ValueError(f"detect_faces takes an H x W x 3 (or H x W x 1, or H x W) image, not shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"detect_faces got an empty image (shape {image.shape})")
    if image.dtype.kind not in "fiu":
        raise ValueError(f"detect_faces takes a float image in [0, 1], not dtype {image.dtype}")
    if image.dtype.kind == "f" and image.dtype != np.float32:
        image = image.astype(np.float32)
    elif image.dtype.kind in "iu" and image.dtype not in (np.uint8, np.uint16):
        image = (image / np.iinfo(image.dtype).max).astype(np.float32)
    return np.ascontiguousarray(image)


def _rgb255(image: np.ndarray) -> np.ndarray:
    """H x W x 3 float32 in 0..255, what the nets take (gray is repeated into the three channels)."""
    if image.dtype == np.float32:
        rgb = np.clip(np.nan_to_num(image), 0.0, 1.0) * np.float32(255.0)
    else:
        rgb = image.astype(np.float32) * np.float32(255.0 / np.iinfo(image.dtype).max)
    if rgb.ndim == 2 or rgb.shape[2] == 1:
        rgb = np.repeat(rgb.reshape(rgb.shape[0], rgb.shape[1], 1), 3, axis=2)
    return np.ascontiguousarray(rgb)


def detect_faces(image: np.ndarray) -> list[Face]:
    """Faces in an H x W x 3 float32 sRGB image in [0, 1] (H x W x 1 and H x W gray too), best score first.

    Boxes (x0, y0, x1, y1; x1/y1 exclusive) are in the given image's pixels, clipped to it. Only faces with an
    O-Net probability of at least `MIN_SCORE` are reported. Images whose longer side exceeds DETECT_SIDE are
    searched on a downscaled copy. Raises ValueError for a shape, dtype or size it cannot take.
    """
    image = _checked(image)
    h, w = image.shape[:2]
    factor = min(1.0, DETECT_SIDE / max(h, w))
    if factor < 1.0:
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if min(image.shape[:2]) < 12:
        return []
    boxes, scores, marks = _mtcnn(_rgb255(image))
    faces = []
    for (x1, y1, x2, y2), score, points in zip(boxes / factor, scores, (marks + 0.5) / factor - 0.5, strict=True):
        x0, y0 = max(0, math.floor(x1)), max(0, math.floor(y1))
        x1_, y1_ = min(w, math.ceil(x2)), min(h, math.ceil(y2))
        if score >= MIN_SCORE and x1_ > x0 and y1_ > y0:
            landmarks = tuple((float(x), float(y)) for x, y in points)
            faces.append(Face((x0, y0, x1_, y1_), float(score), landmarks))  # type: ignore[arg-type]
    return sorted(faces, key=lambda f: -f.score)


def scale_faces(faces: list[Face], factor: float) -> list[Face]:
    """The same faces on an image `factor` times the size (an upscaled result)."""
    if not factor > 0:
        raise ValueError(f"scale factor must be > 0, not {factor}")
    def moved(points: tuple[Point, ...] | None) -> Any:
        return None if points is None else tuple(((x + 0.5) * factor - 0.5, (y + 0.5) * factor - 0.5)
                                                 for x, y in points)

    return [Face(tuple(round(v * factor) for v in f.box), f.score, moved(f.landmarks))  # type: ignore[arg-type]
            for f in faces]


def faces_within(faces: list[Face], mask: np.ndarray | None) -> list[Face]:
    """The faces whose box centre lies in the selection (`mask` >= 0.5, the image's size); all without one."""
    if mask is None:
        return faces
    h, w = mask.shape[:2]
    return [f for f in faces if mask[min(h - 1, (f.box[1] + f.box[3]) // 2), min(w - 1, (f.box[0] + f.box[2]) // 2)]
            >= 0.5]


FEATHER = 0.25  # default feather, of the face box's larger side


def face_mask(height: int, width: int, faces: list[Face], feather: float | None = None) -> np.ndarray:
    """H x W float32 in [0, 1]: 1 inside the ellipse inscribed in each face's box (MTCNN's box runs from the
    hairline to just under the chin), falling smoothly to 0 outside it: a smoothstep over `feather` px (default
    FEATHER x the box's larger side), so a blend through it has no seam. Overlapping faces combine by maximum."""
    if height <= 0 or width <= 0:
        raise ValueError(f"face_mask needs a positive size, not {height} x {width}")
    if feather is not None and feather < 0:
        raise ValueError(f"feather must be >= 0, not {feather}")
    mask = np.zeros((height, width), np.float32)
    for face in faces:
        x0, y0, x1, y1 = face.box
        fw, fh = max(x1 - x0, 1), max(y1 - y0, 1)
        cx, cy, ax, ay = (x0 + x1) / 2, (y0 + y1) / 2, fw / 2, fh / 2
        soft = FEATHER * max(fw, fh) if feather is None else float(feather)
        gx0, gx1 = max(0, math.floor(cx - ax - soft) - 1), min(width, math.ceil(cx + ax + soft) + 2)
        gy0, gy1 = max(0, math.floor(cy - ay - soft) - 1), min(height, math.ceil(cy + ay + soft) + 2)
        if gx1 <= gx0 or gy1 <= gy0:
            continue
        xs = (np.arange(gx0, gx1, dtype=np.float32) + 0.5 - cx) / ax
        ys = (np.arange(gy0, gy1, dtype=np.float32) + 0.5 - cy) / ay
        r = np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2)
        outside = (r - 1) * math.sqrt(ax * ay)  # ~ px beyond the ellipse's edge
        if soft > 0:
            t = np.clip(outside / soft, 0.0, 1.0)
            value = 1 - t * t * (3 - 2 * t)
        else:
            value = (outside <= 0).astype(np.float32)
        region = mask[gy0:gy1, gx0:gx1]
        np.maximum(region, value.astype(np.float32), out=region)
    return mask
