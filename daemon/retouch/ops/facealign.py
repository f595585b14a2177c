"""Faces aligned for face models, and pasted back.

GFPGAN, CodeFormer and RestoreFormer were trained on FFHQ faces aligned to one 512 x 512 template: the eyes, nose
tip and mouth corners at fixed places. `align_face` finds the similarity (rotation, uniform scale, shift) that puts
a face's five landmarks (MTCNN's, from `ops.faces`) closest to that template and cuts the face out with it;
`paste_face` maps the model's face back with the inverse transform and blends it in through a mask that is 1 over
the middle of the crop and falls smoothly to 0 before its edges, so no seam or crop border shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

SIZE = 512  # the template's side
# FFHQ's five-point template at 512 px (x, y): left eye, right eye (as seen), nose tip, left and right mouth corner
TEMPLATE = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
                     [201.26117, 371.41043], [313.08905, 371.15118]], np.float32)
EDGE = 0.06  # of the crop's side: left out at every edge of the paste mask
RAMP = 0.14  # of the crop's side: the mask's smooth rise inside that margin


def align_matrix(landmarks: Sequence[Sequence[float]], size: int = SIZE) -> np.ndarray:
    """2 x 3 float64 similarity mapping image pixels into the size x size aligned crop (least squares over the five
    points); ValueError for landmarks that are not five finite, distinct points."""
    points = np.asarray(landmarks, np.float32)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"a face alignment needs five (x, y) landmarks, not {points.shape}")
    if np.ptp(points, axis=0).max() < 1e-3:
        raise ValueError("the face's landmarks coincide: it cannot be aligned")
    matrix, _ = cv2.estimateAffinePartial2D(points, TEMPLATE * np.float32(size / SIZE), method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("no similarity maps the face's landmarks onto the template")
    return matrix.astype(np.float64)


def scale_of(matrix: np.ndarray) -> float:
    """How much the similarity enlarges (> 1) or shrinks (< 1)."""
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def _area_first(images: list[np.ndarray], matrix: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """When `matrix` shrinks by more than 2x: the images (all one size) area-averaged to twice the target scale,
    and the matrix that maps those copies, so the warp only turns and fine-scales (cv2's warps have no area
    filter, and a plain one would alias). Otherwise the images and the matrix as they are."""
    scale = scale_of(matrix)
    if scale >= 0.5:
        return images, matrix
    factor = min(1.0, 2 * scale)
    h, w = images[0].shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    small = [cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images]
    sx, sy = size[0] / w, size[1] / h
    # the copies' pixel (centres at +0.5) -> the original's: matrix * that
    to_original = np.array([[1 / sx, 0, 0.5 / sx - 0.5], [0, 1 / sy, 0.5 / sy - 0.5], [0, 0, 1]])
    return small, matrix @ to_original


def align_face(image: np.ndarray, matrix: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The size x size crop of an H x W x C float32 image under `matrix` (image -> crop). A face larger than the
    crop is shrunk on an area-averaged copy first, so the crop does not alias; outside the image the picture is
    mirrored."""
    (image,), matrix = _area_first([image], matrix)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return np.ascontiguousarray(np.clip(crop.reshape(size, size, -1), 0.0, 1.0), np.float32)  # cubic overshoots


def crop_mask(size: int) -> np.ndarray:
    """size x size float32: 1 in the middle of the crop, a smoothstep to 0 over RAMP of the side, 0 on the outer
    EDGE (where the mirrored border and the model's own edge effects are)."""
    d = np.minimum(np.arange(size, dtype=np.float32) + 0.5, size - 0.5 - np.arange(size, dtype=np.float32))
    t = np.clip((d / size - EDGE) / RAMP, 0.0, 1.0)
    ramp = t * t * (3 - 2 * t)
    return np.minimum(ramp[:, None], ramp[None, :])


def paste_face(image: np.ndarray, face: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`face` (the size x size crop's restored version) mapped back into a copy of `image` through the inverse of
    `matrix`, blended by `crop_mask`. Returns the new image and the blend weight (H x W float32 in [0, 1])."""
    h, w = image.shape[:2]
    size = face.shape[0]
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ inverse.T
    x0, y0 = (max(0, int(np.floor(v)) - 1) for v in corners.min(0))
    x1, y1 = min(w, int(np.ceil(corners[:, 0].max())) + 1), min(h, int(np.ceil(corners[:, 1].max())) + 1)
    weight = np.zeros((h, w), np.float32)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out, weight
    shifted = inverse.copy()
    shifted[:, 2] -= (x0, y0)
    region = (x1 - x0, y1 - y0)
    (face, mask), shifted = _area_first([face, crop_mask(size)], shifted)  # a 512 px face pasted small
    back = cv2.warpAffine(face, shifted, region, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    m = cv2.warpAffine(mask, shifted, region, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    m = np.clip(m, 0.0, 1.0)
    back = back.reshape(region[1], region[0], -1)
    target = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = target + m[:, :, None] * (np.clip(back, 0.0, 1.0) - target)
    weight[y0:y1, x0:x1] = m
    return out, weight
