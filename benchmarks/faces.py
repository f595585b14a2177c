"""Face detectors compared for the product's `face_strength` (issues 5 and 10): hits, false positives and speed.

Candidates, all offline:
- MTCNN: the three small cascaded CNNs, MIT weights vendored as ONNX in
  `retouch/models/faces/`, on onnxruntime (what `retouch.ops.faces.detect_faces` runs: chosen).
- OpenCV's Haar cascades (`haarcascade_frontalface_default.xml`, `_alt2.xml`) from Debian's `opencv-data`. This
  environment's OpenCV 5 has no `cv2.CascadeClassifier` any more, so they run here on a numpy port of OpenCV's
  evaluator (variance-normalised Haar features on integral images, the same stage rules, window steps and
  `groupRectangles`): what vendoring them would have cost us in code. Needs `--opencv-data DIR`
  (`apt-get download opencv-data && dpkg -x opencv-data_*.deb x`, DIR = x/usr/share/opencv4); skipped otherwise.
- LBP cascades on scikit-image's `Cascade`: the one scikit-image bundles, and with `--opencv-data`,
  `lbpcascade_frontalface_improved.xml` (bench extra only: scikit-image is no runtime dependency).
YuNet (cv2.FaceDetectorYN) could not be a candidate: no PyPI or Debian package we can reach ships its ONNX file
(the PyPI wrappers download it at run time), see models/faces/FACES.md.

Test images (all public domain / CC0, from scikit-image, or the held-out crops in tests/data):
- faces, each with a hand-measured box: the astronaut (Eileen Collins) and variants of it (2x and 4x down, 2x up,
  gray, blurred, JPEG q 20, noisy, rotated +-15 and +-30 degrees, scaled so the face is 24 to 400 px wide),
  a 6000 x 4000 collage of held-out landscape crops with three astronauts (faces 100, 200, 400 px), the
  cameraman (a face in profile) and LFW's 100 faces (scikit-image's `lfw_subset`, 25 px tight crops shown at
  60 px, in one 1200 x 1200 grid);
- no faces: the 32 held-out landscape crops, 17 scikit-image images (chelsea the cat, coffee, rocket, textures...) and
  LFW's 100 non-face patches (one grid).
Every detector sees the same pixels: images larger than 1600 px are searched on a 1600 px copy (as
detect_faces does), boxes mapped back. A hit is a detection with IoU >= 0.4 with a face's box (LFW: >= 0.3,
its crops are tighter than any detector's box); every other detection is a false positive.

    python benchmarks/faces.py [--opencv-data DIR] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import time
import xml.etree.ElementTree as ET  # noqa: S405 (our own test inputs: OpenCV's cascade files)
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from retouch.ops.faces import DETECT_SIDE, detect_faces

ROOT = Path(__file__).resolve().parent.parent
HELDOUT = ROOT / "tests" / "data" / "heldout"
ASTRONAUT_FACE = (180, 80, 256, 160)  # x0 y0 x1 y1, measured by hand: hairline to chin, cheek to cheek
CAMERA_FACE = (190, 105, 256, 200)  # the cameraman, in profile: hair to chin, back of the head to the nose
Box = tuple[float, float, float, float]
Detection = tuple[Box, float]


# ---------------------------------------------------------------- OpenCV's cascades on numpy


class HaarCascade:
    """OpenCV's Haar cascade evaluator (BOOST, stumps or trees, upright features), vectorised over all windows."""

    def __init__(self, path: Path) -> None:
        root = ET.parse(path).getroot().find("cascade")  # noqa: S314
        assert root is not None and root.findtext("featureType") == "HAAR", path
        self.w, self.h = int(root.findtext("width") or 0), int(root.findtext("height") or 0)
        self.features = []
        for feature in root.find("features") or []:
            assert feature.findtext("tilted", "0").strip() == "0", "tilted features are not ported"
            rects = [[float(v) for v in (r.text or "").split()] for r in feature.find("rects") or []]
            self.features.append(np.array(rects))
        self.stages = []
        for stage in root.find("stages") or []:
            weak = []
            for classifier in stage.find("weakClassifiers") or []:
                nodes = np.array((classifier.findtext("internalNodes") or "").split(), float).reshape(-1, 4)
                leaves = np.array((classifier.findtext("leafValues") or "").split(), float)
                weak.append((nodes, leaves))
            self.stages.append((float(stage.findtext("stageThreshold") or 0), weak))

    def _feature(self, ii: np.ndarray, base: np.ndarray, stride: np.ndarray, index: int) -> np.ndarray:
        total = np.zeros(base.shape, np.float64)
        for x, y, w, h, weight in self.features[index]:
            top, bottom = base + int(y) * stride, base + int(y + h) * stride
            x0, x1 = int(x), int(x + w)
            total += weight * (ii[bottom + x1] - ii[bottom + x0] - ii[top + x1] + ii[top + x0])
        return total

    def windows(self, gray: np.ndarray, scale_factor: float = 1.1) -> np.ndarray:
        """Raw accepted windows (N x 4: x, y, w, h) before grouping."""
        sums, sqsums, bases, strides, scales, positions, offset = [], [], [], [], [], [], 0
        factor = 1.0
        while True:
            lw, lh = round(gray.shape[1] / factor), round(gray.shape[0] / factor)
            if lw < self.w or lh < self.h:
                break
            level = cv2.resize(gray, (lw, lh), interpolation=cv2.INTER_LINEAR) if factor > 1 else gray
            s, sq = cv2.integral2(level.astype(np.uint8), sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
            step = 1 if factor > 2 else 2
            ys, xs = np.mgrid[0 : lh - self.h + 1 : step, 0 : lw - self.w + 1 : step]
            sums.append(s.ravel())
            sqsums.append(sq.ravel())
            bases.append(offset + ys.ravel() * (lw + 1) + xs.ravel())
            strides.append(np.full(ys.size, lw + 1))
            scales.append(np.full(ys.size, factor))
            positions.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
            offset += s.size
            factor *= scale_factor
        if not sums:
            return np.zeros((0, 4))
        ii, sq = np.concatenate(sums), np.concatenate(sqsums)
        base, stride = np.concatenate(bases), np.concatenate(strides)
        scale, pos = np.concatenate(scales), np.concatenate(positions)
        # variance normalisation on the window less a 1 px border, and OpenCV's rejection of flat windows
        top, bottom, x0, x1 = base + stride, base + (self.h - 1) * stride, 1, self.w - 1
        area = (self.w - 2) * (self.h - 2)
        wsum = ii[bottom + x1] - ii[bottom + x0] - ii[top + x1] + ii[top + x0]
        wsq = sq[bottom + x1] - sq[bottom + x0] - sq[top + x1] + sq[top + x0]
        nf = area * wsq - wsum * wsum
        alive = nf > 0
        nf = np.sqrt(np.where(alive, nf, 1.0))
        alive &= area / nf < 0.1
        base, stride, nf, scale, pos = base[alive], stride[alive], nf[alive], scale[alive], pos[alive]
        for threshold, weak in self.stages:
            if not base.size:
                break
            total = np.zeros(base.size)
            for nodes, leaves in weak:
                if len(nodes) == 1:  # a stump
                    value = self._feature(ii, base, stride, int(nodes[0, 2])) / nf
                    total += np.where(value < nodes[0, 3], leaves[0], leaves[1])
                    continue
                node = np.zeros(base.size, np.int64)  # trees: windows walk down node by node
                leaf = np.full(base.size, -1, np.int64)
                for k, (left, right, feature, split) in enumerate(nodes):
                    at = np.flatnonzero((node == k) & (leaf < 0))
                    if not at.size:
                        continue
                    value = self._feature(ii, base[at], stride[at], int(feature)) / nf[at]
                    nxt = np.where(value < split, left, right).astype(np.int64)
                    leaf[at[nxt <= 0]] = -nxt[nxt <= 0]
                    node[at[nxt > 0]] = nxt[nxt > 0]
                total += leaves[leaf]
            keep = total >= threshold
            base, stride, nf, scale, pos = base[keep], stride[keep], nf[keep], scale[keep], pos[keep]
        return np.column_stack([pos * scale[:, None], self.w * scale, self.h * scale]).round()


def group_rectangles(rects: np.ndarray, min_neighbors: int = 3, eps: float = 0.2) -> list[tuple[np.ndarray, int]]:
    """cv2.groupRectangles: cluster similar windows, keep clusters of more than min_neighbors, drop nested ones."""
    n = len(rects)
    if not n:
        return []
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    x, y, w, h = rects.T
    delta = eps * (np.minimum(w[:, None], w[None]) + np.minimum(h[:, None], h[None])) * 0.5
    similar = (
        (np.abs(x[:, None] - x[None]) <= delta)
        & (np.abs(y[:, None] - y[None]) <= delta)
        & (np.abs(x[:, None] + w[:, None] - x[None] - w[None]) <= delta)
        & (np.abs(y[:, None] + h[:, None] - y[None] - h[None]) <= delta)
    )
    for i, j in zip(*np.nonzero(np.triu(similar, 1)), strict=True):
        parent[find(i)] = find(j)
    labels = np.array([find(i) for i in range(n)])
    groups = [(rects[labels == label].mean(axis=0).round(), int((labels == label).sum())) for label in set(labels)]
    groups = [(r, c) for r, c in groups if c > min_neighbors]
    kept = []
    for i, (r1, n1) in enumerate(groups):
        nested = False
        for j, (r2, n2) in enumerate(groups):
            dx, dy = round(r2[2] * eps), round(r2[3] * eps)
            if (
                i != j
                and r1[0] >= r2[0] - dx
                and r1[1] >= r2[1] - dy
                and r1[0] + r1[2] <= r2[0] + r2[2] + dx
                and r1[1] + r1[3] <= r2[1] + r2[3] + dy
                and (n2 > max(3, n1) or n1 < 3)
            ):
                nested = True
                break
        if not nested:
            kept.append((r1, n1))
    return kept


def gray255(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor((image * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)


def haar_detector(path: Path) -> Callable[[np.ndarray], list[Detection]]:
    cascade = HaarCascade(path)

    def detect(image: np.ndarray) -> list[Detection]:
        gray = cv2.equalizeHist(gray255(image))  # as OpenCV's samples do before detectMultiScale
        found = group_rectangles(cascade.windows(gray))
        return [((r[0], r[1], r[0] + r[2], r[1] + r[3]), float(c)) for r, c in found]

    return detect


def lbp_detector(path: Path) -> Callable[[np.ndarray], list[Detection]]:
    from skimage.feature import Cascade

    cascade = Cascade(str(path))

    def detect(image: np.ndarray) -> list[Detection]:
        gray = gray255(image).astype(np.float64) / 255
        found = cascade.detect_multi_scale(
            img=gray, scale_factor=1.1, step_ratio=1, min_size=(24, 24), max_size=gray.shape[::-1]
        )
        return [((d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]), 1.0) for d in found]

    return detect


def mtcnn_detector(image: np.ndarray) -> list[Detection]:
    return [(face.box, face.score) for face in detect_faces(image)]


def searched_at_most(detect: Callable[[np.ndarray], list[Detection]]) -> Callable[[np.ndarray], list[Detection]]:
    """Every candidate searches images over DETECT_SIDE px on a downscaled copy, as detect_faces does."""

    def run(image: np.ndarray) -> list[Detection]:
        factor = min(1.0, DETECT_SIDE / max(image.shape[:2]))
        if factor == 1.0 or detect is mtcnn_detector:
            return detect(image)
        small = cv2.resize(image, (round(image.shape[1] * factor), round(image.shape[0] * factor)), cv2.INTER_AREA)
        return [(tuple(v / factor for v in box), score) for box, score in detect(small)]  # type: ignore[misc]

    return run


# ---------------------------------------------------------------- test images


def load_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return cv2.cvtColor(image[..., :3], cv2.COLOR_BGR2RGB).astype(np.float32) / scale


def as_float(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    bgr = cv2.cvtColor((image * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR)
    data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
    return as_float(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


def scaled_box(box: Box, factor: float) -> Box:
    return tuple(v * factor for v in box)  # type: ignore[return-value]


def rotated(image: np.ndarray, box: Box, degrees: float) -> tuple[np.ndarray, Box]:
    """The image turned about the face's centre; the face's box keeps its size (the face turns inside it)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    m = cv2.getRotationMatrix2D((cx, cy), degrees, 1.0)
    return cv2.warpAffine(image, m, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT), box


def grid(patches: np.ndarray, cell: int = 120, face: int = 60) -> tuple[np.ndarray, list[Box]]:
    """LFW's 25 px patches at `face` px, each in the middle of a cell (border replicated), 10 to a row."""
    rows, boxes = [], []
    pad = (cell - face) // 2
    for r in range(0, len(patches), 10):
        row = []
        for i, patch in enumerate(patches[r : r + 10]):
            big = cv2.resize(patch.astype(np.float32), (face, face), interpolation=cv2.INTER_CUBIC)
            row.append(cv2.copyMakeBorder(np.clip(big, 0, 1), pad, pad, pad, pad, cv2.BORDER_REPLICATE))
            boxes.append((i * cell + pad, r // 10 * cell + pad, i * cell + pad + face, r // 10 * cell + pad + face))
        rows.append(np.concatenate(row, axis=1))
    return as_float(np.concatenate(rows, axis=0)), boxes


def collage(astronaut: np.ndarray, widths: tuple[int, ...], size: tuple[int, int] = (6000, 4000)) -> tuple:
    tiles = [load_rgb(p) for p in sorted(HELDOUT.glob("*.png"))]
    tile = tiles[0].shape[0]
    canvas = np.zeros((size[1], size[0], 3), np.float32)
    for k, (y, x) in enumerate(np.ndindex(size[1] // tile + 1, size[0] // tile + 1)):
        part = canvas[y * tile : (y + 1) * tile, x * tile : (x + 1) * tile]
        part[:] = tiles[k % len(tiles)][: part.shape[0], : part.shape[1]]
    boxes, x = [], 200
    for width in widths:
        factor = width / (ASTRONAUT_FACE[2] - ASTRONAUT_FACE[0])
        person = resized(astronaut, factor)
        y = size[1] - person.shape[0] - 100
        canvas[y : y + person.shape[0], x : x + person.shape[1]] = person
        face = scaled_box(ASTRONAUT_FACE, factor)
        boxes.append((face[0] + x, face[1] + y, face[2] + x, face[3] + y))
        x += person.shape[1] + 300
    return canvas, boxes


def test_set(quick: bool) -> list[tuple[str, str, np.ndarray, list[Box], float]]:
    """(group, name, image, true face boxes, IoU for a hit)."""
    from skimage import data

    astro = as_float(data.astronaut())
    face = ASTRONAUT_FACE
    width = face[2] - face[0]
    out = [("astronaut", "astronaut 512", astro, [face], 0.4)]
    variants = {
        "2x down": (resized(astro, 0.5), [scaled_box(face, 0.5)]),
        "4x down (face 19 px)": (resized(astro, 0.25), [scaled_box(face, 0.25)]),
        "2x up": (resized(astro, 2.0), [scaled_box(face, 2.0)]),
        "gray": (as_float(cv2.cvtColor(astro, cv2.COLOR_RGB2GRAY)), [face]),
        "blur sigma 3": (cv2.GaussianBlur(astro, (0, 0), 3), [face]),
        "JPEG q 20": (jpeg(astro, 20), [face]),
        "noise sigma 0.08": (
            np.clip(astro + np.random.default_rng(0).normal(0, 0.08, astro.shape), 0, 1).astype(np.float32),
            [face],
        ),
    }
    for degrees in (15, -15, 30, -30):
        image, box = rotated(astro, face, degrees)
        variants[f"rotated {degrees:+d} deg"] = (image, [box])
    for target in (24, 48, 96, 200, 400):
        factor = target / width
        variants[f"face {target} px"] = (resized(astro, factor), [scaled_box(face, factor)])
    out += [("astronaut", name, image, boxes, 0.4) for name, (image, boxes) in variants.items()]
    big, boxes = collage(astro, (100, 200, 400))
    out.append(("astronaut", "6000x4000, 3 faces", big, boxes, 0.4))
    out.append(("profile", "cameraman", as_float(data.camera()), [CAMERA_FACE], 0.4))
    lfw = data.lfw_subset()
    faces_grid, face_boxes = grid(lfw[:100])
    out.append(("lfw", "LFW 100 faces", faces_grid, face_boxes, 0.3))
    non_grid, _ = grid(lfw[100:])
    out.append(("no face", "LFW 100 non-faces", non_grid, [], 0.4))
    for path in sorted(HELDOUT.glob("*.png"))[: 8 if quick else None]:
        out.append(("no face", f"held-out {path.stem}", load_rgb(path), [], 0.4))
    names = ["chelsea", "coffee", "rocket", "stereo_motorcycle", "brick", "grass", "gravel", "hubble_deep_field",
             "coins", "moon", "horse", "retina", "immunohistochemistry", "page", "text", "logo", "colorwheel"]
    for name in names[: 4 if quick else None]:
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image
        image = image[..., :3] if image.ndim == 3 else image
        out.append(("no face", name, as_float(image.astype(np.uint8) * (255 if image.dtype == bool else 1)), [], 0.4))
    return out


# ---------------------------------------------------------------- scoring


def iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def score(found: list[Detection], truth: list[Box], threshold: float) -> tuple[int, int, list[float]]:
    """Hits, false positives (greedy one-to-one matching, best score first), and the hits' IoUs."""
    free, hits, ious = list(truth), 0, []
    for box, _ in sorted(found, key=lambda d: -d[1]):
        best = max(free, key=lambda t: iou(box, t), default=None)
        if best is not None and iou(box, best) >= threshold:
            free.remove(best)
            hits += 1
            ious.append(iou(box, best))
    return hits, len(found) - hits, ious


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--opencv-data", type=Path, help="unpacked opencv-data's usr/share/opencv4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer no-face images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    import skimage

    detectors: dict[str, Callable[[np.ndarray], list[Detection]]] = {"MTCNN *": mtcnn_detector}
    if args.opencv_data:
        haar = args.opencv_data / "haarcascades"
        detectors["Haar default"] = haar_detector(haar / "haarcascade_frontalface_default.xml")
        detectors["Haar alt2"] = haar_detector(haar / "haarcascade_frontalface_alt2.xml")
        detectors["LBP improved"] = lbp_detector(args.opencv_data / "lbpcascades/lbpcascade_frontalface_improved.xml")
    else:
        print("no --opencv-data: the Haar and improved LBP cascades are skipped")
    detectors["LBP skimage"] = lbp_detector(Path(skimage.data.__file__).parent / "lbpcascade_frontalface_opencv.xml")
    detectors = {name: searched_at_most(d) for name, d in detectors.items()}
    detect_faces(np.zeros((64, 64, 3), np.float32))  # load the weights outside the timings

    images = test_set(args.quick)
    names = list(detectors)
    print(f"{'image':32s} {'faces':>5s} " + " ".join(f"{n:>14s}" for n in names))
    print(f"{'':32s} {'':5s} " + " ".join(f"{'hits  FP':>14s}" for _ in names))
    totals = {n: {} for n in names}
    seconds = dict.fromkeys(names, 0.0)
    megapixels = 0.0
    for group, name, image, truth, threshold in images:
        megapixels += image.shape[0] * image.shape[1] / 1e6
        cells = []
        for n, detect in detectors.items():
            start = time.perf_counter()
            found = detect(image)
            seconds[n] += time.perf_counter() - start
            hits, fps, ious = score(found, truth, threshold)
            h0, f0, c0, i0 = totals[n].get(group, (0, 0, 0, []))
            totals[n][group] = (h0 + hits, f0 + fps, c0 + len(truth), i0 + ious)
            cells.append(f"{hits:>5d} {fps:>4d}" + (f" {np.mean(ious):.2f}" if ious else "     "))
        print(f"{name:32s} {len(truth):>5d} " + " ".join(f"{c:>14s}" for c in cells), flush=True)
    print()
    print(f"{'total':32s} {'':5s} " + " ".join(f"{n:>14s}" for n in names))
    for group in ("astronaut", "profile", "lfw", "no face"):
        cells = []
        for n in names:
            hits, fps, count, ious = totals[n][group]
            cells.append(f"{hits}/{count} FP {fps}" if count else f"FP {fps}")
        print(f"{group:32s} {'':5s} " + " ".join(f"{c:>14s}" for c in cells))
    print(f"{'ms per megapixel':32s} {'':5s} " + " ".join(f"{1000 * seconds[n] / megapixels:>14.0f}" for n in names))
    print(f"\n{len(images)} images, {megapixels:.1f} MP; hits: IoU >= 0.4 (LFW 0.3), mean IoU of the hits after "
          f"the counts; * = chosen (retouch.ops.faces.detect_faces); {args.threads} threads")


if __name__ == "__main__":
    main()
