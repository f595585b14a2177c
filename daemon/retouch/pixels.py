"""Raw frames <-> float32 working images (numpy side of the wire format).

The working image of every task is float32 H x W x 3 in sRGB-encoded [0, 1] (models are trained on sRGB photos),
plus an optional H x W alpha. Gray input is replicated to three channels and folded back on the way out; linear
input is encoded to sRGB before the model and decoded after; BGRA is reordered; u8/u16 are scaled, floats are kept
(values above 1 are clipped only for the model, alpha is never clipped for float callers).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import BadRequest
from .protocol import ImageSpec

NUMPY_DTYPES = {"u8": np.dtype("u1"), "u16": np.dtype("<u2"), "f16": np.dtype("<f2"), "f32": np.dtype("<f4")}
DTYPE_NAMES = {np.dtype("u1"): "u8", np.dtype("u2"): "u16", np.dtype("f2"): "f16", np.dtype("f4"): "f32"}
SCALE = {"u8": 255.0, "u16": 65535.0}


@dataclass
class WorkImage:
    color: np.ndarray  # H x W x 3 float32, sRGB-encoded
    alpha: np.ndarray | None  # H x W float32 or None
    gray: bool

    @property
    def height(self) -> int:
        return int(self.color.shape[0])

    @property
    def width(self) -> int:
        return int(self.color.shape[1])


def frame_to_array(spec: ImageSpec, frame: bytes | memoryview) -> np.ndarray:
    """The frame as H x W x C in its own dtype and channel order (stride removed)."""
    spec.check_frame(frame)
    dt = NUMPY_DTYPES[spec.dtype]
    rows = np.frombuffer(frame, dtype=np.uint8).reshape(spec.height, spec.row_stride)[:, : spec.row_bytes]
    return np.ascontiguousarray(rows).view(dt).reshape(spec.height, spec.width, spec.channels)


def array_to_frame(arr: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(arr.astype(NUMPY_DTYPES[dtype], copy=False)).tobytes()


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, None)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, None)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055).astype(np.float32)


def to_float(arr: np.ndarray, dtype: str) -> np.ndarray:
    if dtype in SCALE:
        return arr.astype(np.float32) / np.float32(SCALE[dtype])
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise BadRequest("image contains NaN or infinite values")
    return out


def from_float(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype in SCALE:
        return np.clip(np.rint(x * SCALE[dtype]), 0, SCALE[dtype]).astype(NUMPY_DTYPES[dtype])
    return x.astype(NUMPY_DTYPES[dtype])


def decode_image(spec: ImageSpec, frame: bytes | memoryview) -> WorkImage:
    arr = to_float(frame_to_array(spec, frame), spec.dtype)
    alpha = None
    if spec.order == "GRAY":
        color = np.repeat(arr, 3, axis=2)
    elif spec.order == "RGB":
        color = arr
    else:
        color = arr[:, :, 2::-1] if spec.order == "BGRA" else arr[:, :, :3]
        alpha = np.ascontiguousarray(arr[:, :, 3])
    if spec.transfer == "linear":
        color = linear_to_srgb(color)
    return WorkImage(np.ascontiguousarray(color, dtype=np.float32), alpha, spec.order == "GRAY")


def encode_image(img: WorkImage, like: ImageSpec) -> tuple[ImageSpec, bytes]:
    """Back to the caller's dtype, order and transfer; the returned spec is tightly packed. A gray image that came
    back in colour (colorize) is returned as RGB."""
    color = img.color
    order = "RGB" if like.order == "GRAY" and not img.gray else like.order
    if like.transfer == "linear":
        color = srgb_to_linear(color)
    elif like.dtype in SCALE:
        color = np.clip(color, 0.0, 1.0)
    if order == "GRAY":
        arr = color.mean(axis=2, keepdims=True)
    elif order == "RGB":
        arr = color
    else:
        alpha = img.alpha if img.alpha is not None else np.ones(color.shape[:2], np.float32)
        rgb = color[:, :, ::-1] if like.order == "BGRA" else color
        arr = np.concatenate([rgb, alpha[:, :, None]], axis=2)
    spec = ImageSpec(img.width, img.height, like.dtype, order, like.transfer, 0)
    return spec, array_to_frame(from_float(arr, like.dtype), like.dtype)


def decode_mask(spec: ImageSpec, frame: bytes | memoryview) -> np.ndarray:
    """u8 selection mask -> H x W float32 in [0, 1] (1 = process)."""
    return frame_to_array(spec, frame)[:, :, 0].astype(np.float32) / 255.0


def spec_for_array(arr: np.ndarray, transfer: str = "srgb") -> ImageSpec:
    """ImageSpec describing an H x W x C array in RGB(A)/GRAY order (used by the CLI and tests)."""
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    order = {1: "GRAY", 3: "RGB", 4: "RGBA"}.get(channels)
    if order is None:
        raise BadRequest(f"images with {channels} channels are not supported (1, 3 or 4)")
    name = DTYPE_NAMES.get(arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype)
    if name is None:
        raise BadRequest(f"pixel type {arr.dtype} is not supported (uint8, uint16, float16, float32)")
    return ImageSpec(int(arr.shape[1]), int(arr.shape[0]), name, order, transfer, 0)


def resize(x: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bicubic enlargement, area reduction (H x W or H x W x C float32)."""
    shrinking = width < x.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(x, (width, height), interpolation=interp)


def resize_alpha(alpha: np.ndarray, width: int, height: int) -> np.ndarray:
    """Alpha resized like the colour, bicubic overshoot clipped (float callers may carry alpha above 1)."""
    return np.clip(resize(alpha, width, height), 0.0, max(1.0, float(alpha.max())))
