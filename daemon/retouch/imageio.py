"""Reading and writing image files (PNG, JPEG, TIFF) for the `retouch` CLI.

Pixels are always H x W x C numpy arrays in RGB order (never BGR), C in (1, 2, 3, 4) meaning GRAY, GRAY+alpha,
RGB, RGBA, of dtype uint8, uint16 or float32. The embedded ICC profile and the alpha channel are kept.

PNG pixel data goes through OpenCV (Pillow cannot do 16-bit RGB PNG); the PNG chunks (ICC profile, integrity) are
read and written by this module. JPEG goes through Pillow, TIFF through tifffile. Every error is an `ImageError`
with one line that names the path.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageOps

from .errors import ImageError

SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

_FORMAT_BY_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ICC_TAG = 34675
_IDAT_CHUNK = 1 << 23


@dataclass
class LoadedImage:
    """A decoded image: H x W x C pixels (RGB order), its ICC profile and the container format."""

    pixels: np.ndarray
    icc_profile: bytes | None
    format: str


# --------------------------------------------------------------------------------------------------------------------
# helpers


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _suffix_format(path: str, action: str) -> str:
    suffix = os.path.splitext(path)[1].lower()
    fmt = _FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None:
        shown = f"'{suffix}'" if suffix else "(none)"
        raise ImageError(
            f"{path}: cannot {action}: unsupported file extension {shown} (supported: {', '.join(SUPPORTED_SUFFIXES)})"
        )
    return fmt


def _sniff(head: bytes) -> str | None:
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in _TIFF_SIGNATURES:
        return "TIFF"
    return None


def _as_hwc(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        return pixels[:, :, None]
    return pixels


# --------------------------------------------------------------------------------------------------------------------
# reading


MAX_PIXELS = 250_000_000  # a 100 MP photo fits with room; a decompression bomb does not


def _check_size(path: str, fmt: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse oversized images from their header, before any pixel is decoded."""
    if width * height > max_pixels:
        raise ImageError(
            f"{path}: {fmt} image is {width}x{height} = {width * height / 1e6:.0f} MP, over the limit of "
            f"{max_pixels / 1e6:.0f} MP (a decompression bomb, or set RETOUCH_MAX_PIXELS)"
        )


def _max_pixels() -> int:
    try:
        return int(os.environ.get("RETOUCH_MAX_PIXELS", MAX_PIXELS))
    except ValueError:
        return MAX_PIXELS


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Read a PNG, JPEG or TIFF file into H x W x C RGB(A)/gray(+alpha) pixels plus its ICC profile.

    The decoder is chosen from the file's content (a mislabelled file still reads); the extension must be one of
    SUPPORTED_SUFFIXES. Palette images become RGB or RGBA, CMYK becomes RGB (its profile dropped), JPEG EXIF
    orientation is applied, float16/float64 TIFF becomes float32. 1-bit and other bit depths below 8 (except
    palette), signed-integer and 32-bit-integer data are refused, and so are images over MAX_PIXELS
    (`RETOUCH_MAX_PIXELS`), checked from the header before decoding.
    """
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    _suffix_format(p, "read")
    if os.path.isdir(p):
        raise ImageError(f"{p}: is a directory, not an image file")
    try:
        with open(p, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError(f"{p}: file not found") from None
    except PermissionError:
        raise ImageError(f"{p}: cannot read: permission denied") from None
    except OSError as exc:
        raise ImageError(f"{p}: cannot read: {_one_line(exc)}") from None
    if not data:
        raise ImageError(f"{p}: file is empty, not an image")
    fmt = _sniff(data[:16])
    if fmt is None:
        raise ImageError(f"{p}: not an image (content is not PNG, JPEG or TIFF)")
    limit = _max_pixels()
    if fmt == "PNG":
        pixels, icc = _read_png(p, data, limit)
    elif fmt == "JPEG":
        pixels, icc = _read_jpeg(p, limit)
    else:
        pixels, icc = _read_tiff(p, len(data), limit)
    pixels = np.ascontiguousarray(_as_hwc(pixels))
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(f"{p}: unsupported {fmt} pixel layout {pixels.shape}")
    if pixels.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageError(f"{p}: unsupported {fmt} pixel type {pixels.dtype}")
    return LoadedImage(pixels=pixels, icc_profile=icc or None, format=fmt)


def _png_chunks(path: str, data: bytes) -> tuple[tuple[int, int, int, int], bytes | None]:
    """Walk the chunks (checking CRCs and IEND); return (width, height, bit depth, colour type) and the ICC."""
    pos = len(_PNG_SIGNATURE)
    ihdr: tuple[int, int, int, int] | None = None
    icc: bytes | None = None
    while True:
        if pos + 8 > len(data):
            raise ImageError(f"{path}: truncated PNG image (ends before IEND)")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length + 4
        if end > len(data):
            raise ImageError(f"{path}: truncated PNG image (chunk {ctype!r} cut short)")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(ctype + body) != crc:
            raise ImageError(f"{path}: corrupt PNG image (bad CRC in chunk {ctype!r})")
        if ihdr is None:
            if ctype != b"IHDR" or length != 13:
                raise ImageError(f"{path}: corrupt PNG image (first chunk is not IHDR)")
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            ihdr = (width, height, depth, color)
        elif ctype == b"iCCP" and icc is None:
            sep = body.find(b"\x00")
            if sep >= 0 and sep + 2 <= len(body):
                with contextlib.suppress(zlib.error):
                    icc = zlib.decompress(body[sep + 2 :])
        elif ctype == b"IEND":
            return ihdr, icc
        pos = end


def _read_png(path: str, data: bytes, max_pixels: int) -> tuple[np.ndarray, bytes | None]:
    (width, height, depth, color), icc = _png_chunks(path, data)
    _check_size(path, "PNG", width, height, max_pixels)
    if color == 3:  # palette: Pillow expands it (with tRNS -> RGBA)
        try:
            with Image.open(path, formats=["PNG"]) as im:
                rgba = "transparency" in im.info or im.mode == "PA"
                pixels = np.asarray(im.convert("RGBA" if rgba else "RGB"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"{path}: corrupt PNG image ({_one_line(exc)})") from None
        return pixels, icc
    if color not in (0, 2, 4, 6):
        raise ImageError(f"{path}: corrupt PNG image (invalid colour type {color})")
    if depth not in (8, 16):
        raise ImageError(f"{path}: unsupported PNG pixel type: {depth}-bit (only 8- and 16-bit or palette)")
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ImageError(f"{path}: corrupt PNG image ({_one_line(exc)})") from None
    if arr is None:
        raise ImageError(f"{path}: corrupt or truncated PNG image (cannot decode pixel data)")
    want = np.uint16 if depth == 16 else np.uint8
    if arr.shape[:2] != (height, width) or arr.dtype != want:
        raise ImageError(f"{path}: corrupt PNG image (decoded {arr.shape} {arr.dtype}, header says {width}x{height})")
    arr = _as_hwc(arr)
    channels = arr.shape[2]
    if color in (0, 4):  # gray / gray+alpha: OpenCV replicates gray into B, G, R
        if channels == 4:
            return arr[:, :, [0, 3]], icc
        return arr[:, :, :1], icc
    if channels == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA), icc
    if channels == 3:
        return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), icc
    return arr, icc


def _read_jpeg(path: str, max_pixels: int) -> tuple[np.ndarray, bytes | None]:
    try:
        with Image.open(path, formats=["JPEG"]) as im:
            _check_size(path, "JPEG", im.width, im.height, max_pixels)
            icc = im.info.get("icc_profile")
            im.load()
            if im.mode not in ("L", "RGB", "CMYK"):
                raise ImageError(f"{path}: unsupported JPEG pixel type (mode {im.mode})")
            out = ImageOps.exif_transpose(im) or im
            if out.mode == "CMYK":
                out = out.convert("RGB")
                icc = None
            pixels = np.array(out)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{path}: JPEG image too large ({_one_line(exc)})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{path}: corrupt or truncated JPEG image ({_one_line(exc)})") from None
    return pixels, icc


def _read_tiff(path: str, size: int, max_pixels: int) -> tuple[np.ndarray, bytes | None]:
    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.pages:
                raise ImageError(f"{path}: TIFF file has no images")
            page = tif.pages[0]
            if not isinstance(page, tifffile.TiffPage):
                page = page.keyframe
            _check_size(path, "TIFF", int(page.imagewidth), int(page.imagelength), max_pixels)
            for off, cnt in zip(page.dataoffsets, page.databytecounts, strict=False):
                if off + cnt > size:
                    raise ImageError(f"{path}: truncated TIFF image (pixel data runs past the end of the file)")
            tag = page.tags.get(_ICC_TAG)
            icc = bytes(tag.value) if tag is not None and tag.value is not None else None
            photometric = int(page.photometric)
            arr = page.asarray()
            axes = page.axes
            colormap = page.colormap
            extrasamples = tuple(int(e) for e in page.extrasamples)
            bits = page.bitspersample
    except ImageError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError, zlib.error, tifffile.TiffFileError) as exc:
        if "imagecodecs" in str(exc):  # e.g. LZW or JPEG compression without the imagecodecs package
            return _read_tiff_pillow(path, exc)
        raise ImageError(f"{path}: corrupt, truncated or unsupported TIFF image ({_one_line(exc)})") from None
    return _normalise_tiff(path, arr, axes, photometric, colormap, extrasamples, bits), icc


_PILLOW_TIFF_MODES = {"L": None, "LA": None, "RGB": None, "RGBA": None, "I;16": np.uint16, "F": np.float32}


def _read_tiff_pillow(path: str, reason: Exception) -> tuple[np.ndarray, bytes | None]:
    """Fallback for TIFF compressions tifffile cannot decode without imagecodecs (LZW, JPEG): Pillow."""
    try:
        with Image.open(path, formats=["TIFF"]) as im:
            icc = im.info.get("icc_profile")
            im.load()
            out = im
            if im.mode == "P":
                out = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode == "CMYK":
                out = im.convert("RGB")
                icc = None
            elif im.mode not in _PILLOW_TIFF_MODES:
                raise ImageError(f"{path}: unsupported TIFF image ({_one_line(reason)})")
            pixels = np.array(out)
            dtype = _PILLOW_TIFF_MODES.get(out.mode)
            if dtype is not None:
                pixels = pixels.astype(dtype)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: corrupt or unsupported TIFF image ({_one_line(exc)})") from None
    return pixels, icc


def _normalise_tiff(
    path: str,
    arr: np.ndarray,
    axes: str,
    photometric: int,
    colormap: np.ndarray | None,
    extrasamples: tuple[int, ...],
    bits: int,
) -> np.ndarray:
    # keep Y, X, S in that order; other axes (pages of a volume, ...) -> first entry
    for i, ax in reversed(list(enumerate(axes))):
        if ax not in "YXS":
            arr = np.take(arr, 0, axis=i)
    kept = [ax for ax in axes if ax in "YXS"]
    if "Y" not in kept or "X" not in kept:
        raise ImageError(f"{path}: unsupported TIFF layout (axes {axes})")
    if "S" not in kept:
        arr = arr[..., None]
        kept.append("S")
    arr = np.transpose(arr, [kept.index("Y"), kept.index("X"), kept.index("S")])
    if arr.dtype == np.bool_ or (bits < 8 and photometric != 3):
        raise ImageError(f"{path}: unsupported TIFF pixel type: {bits}-bit")
    if arr.dtype in (np.float16, np.float64):
        arr = arr.astype(np.float32)
    if photometric == 3:  # palette
        if colormap is None:
            raise ImageError(f"{path}: corrupt TIFF image (palette without colour map)")
        cmap = np.asarray(colormap).astype(np.uint16)
        if not np.issubdtype(arr.dtype, np.unsignedinteger) or int(arr[..., 0].max()) >= cmap.shape[1]:
            raise ImageError(f"{path}: corrupt TIFF image (palette index out of range)")
        rgb = np.moveaxis(cmap[:, arr[..., 0]], 0, -1)
        if np.all(cmap % 257 == 0):
            rgb = (rgb // 257).astype(np.uint8)
        return rgb
    if arr.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageError(f"{path}: unsupported TIFF pixel type {arr.dtype} (only uint8, uint16, float)")
    channels = arr.shape[2]
    if photometric in (0, 1):  # min-is-white / min-is-black
        if photometric == 0:
            if arr.dtype == np.float32:
                raise ImageError(f"{path}: unsupported TIFF pixel type (float min-is-white)")
            arr = np.iinfo(arr.dtype).max - arr
        alpha = channels > 1 and extrasamples[:1] in ((1,), (2,))
        return arr[:, :, :2] if alpha else arr[:, :, :1]
    if photometric == 2:  # RGB
        if channels < 3:
            raise ImageError(f"{path}: corrupt TIFF image (RGB with {channels} samples)")
        alpha = channels > 3 and extrasamples[:1] in ((1,), (2,))
        return arr[:, :, :4] if alpha else arr[:, :, :3]
    if photometric == 5:  # CMYK -> RGB, naive (the CMYK profile is meaningless afterwards)
        if channels < 4 or arr.dtype == np.float32:
            raise ImageError(f"{path}: unsupported TIFF pixel type (CMYK with {channels} samples of {arr.dtype})")
        peak = float(np.iinfo(arr.dtype).max)
        cmyk = arr[:, :, :4].astype(np.float32) / peak
        rgb = (1.0 - cmyk[:, :, :3]) * (1.0 - cmyk[:, :, 3:4])
        out = np.rint(rgb * peak).astype(arr.dtype)
        if channels > 4 and extrasamples[:1] in ((1,), (2,)):
            out = np.concatenate([out, arr[:, :, 4:5]], axis=2)
        return out
    raise ImageError(f"{path}: unsupported TIFF colour model (photometric {photometric})")


# --------------------------------------------------------------------------------------------------------------------
# writing


def write_image(
    path: str | os.PathLike,
    pixels: np.ndarray,
    icc_profile: bytes | None = None,
    *,
    jpeg_quality: int = 95,
) -> None:
    """Write H x W x C pixels (RGB order; H x W is taken as gray) atomically, format chosen by the suffix.

    PNG: uint8/uint16 stored as is; float is clipped to [0, 1] and stored as 16-bit. JPEG: 8-bit only, so uint16 is
    scaled (x / 257) and float clipped to [0, 1] and scaled by 255, both rounded; alpha is refused (JPEG has none);
    quality `jpeg_quality` (1-100), 4:4:4 chroma at quality >= 90. TIFF: uint8, uint16, float32 (float16/float64
    become float32), zlib-compressed, alpha as unassociated alpha. The ICC profile is embedded in all three.
    The data goes to a temporary file in the destination directory that replaces the target only when complete; on
    failure the target is left untouched. The destination directory must exist.
    """
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    fmt = _suffix_format(p, "write")
    arr = _check_pixels(p, pixels)
    if icc_profile is not None and not isinstance(icc_profile, (bytes, bytearray, memoryview)):
        raise ImageError(f"{p}: ICC profile must be bytes, not {type(icc_profile).__name__}")
    icc = bytes(icc_profile) if icc_profile else None
    if fmt == "PNG":
        data = _encode_png(p, arr, icc)
        _atomic_write(p, lambda f: f.write(data))
    elif fmt == "JPEG":
        data = _encode_jpeg(p, arr, icc, jpeg_quality)
        _atomic_write(p, lambda f: f.write(data))
    else:
        arr = arr.astype(np.float32, copy=False) if arr.dtype.kind == "f" else arr
        _atomic_write(p, lambda f: _write_tiff(f, arr, icc))


def _check_pixels(path: str, pixels: np.ndarray) -> np.ndarray:
    if not isinstance(pixels, np.ndarray):
        raise ImageError(f"{path}: cannot write: pixels must be a numpy array, not {type(pixels).__name__}")
    arr = _as_hwc(pixels)
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageError(f"{path}: cannot write pixels of shape {pixels.shape} (want H x W x C with C in 1..4)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageError(f"{path}: cannot write an empty image of shape {pixels.shape}")
    if arr.dtype not in (np.uint8, np.uint16) and arr.dtype.kind != "f":
        raise ImageError(f"{path}: cannot write pixel type {arr.dtype} (only uint8, uint16, float)")
    return arr


def _float_to_uint(arr: np.ndarray, dtype: type[np.unsignedinteger]) -> np.ndarray:
    peak = float(np.iinfo(dtype).max)
    scaled = np.clip(np.nan_to_num(arr.astype(np.float32), nan=0.0), 0.0, 1.0) * peak
    return np.rint(scaled).astype(dtype)


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _iccp_chunk(icc: bytes) -> bytes:
    return _png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc))


def _encode_png(path: str, arr: np.ndarray, icc: bytes | None) -> bytes:
    if arr.dtype.kind == "f":
        arr = _float_to_uint(arr, np.uint16)
    channels = arr.shape[2]
    if channels == 2:  # OpenCV cannot write gray+alpha: encode it here
        return _encode_png_gray_alpha(arr, icc)
    if channels == 1:
        bgr = np.ascontiguousarray(arr[:, :, 0])
    elif channels == 3:
        bgr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    else:
        bgr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGBA2BGRA)
    try:
        ok, buf = cv2.imencode(".png", bgr)
    except cv2.error as exc:
        raise ImageError(f"{path}: cannot encode PNG ({_one_line(exc)})") from None
    if not ok:
        raise ImageError(f"{path}: cannot encode PNG")
    data = buf.tobytes()
    if icc:
        ihdr_end = len(_PNG_SIGNATURE) + 8 + 13 + 4
        data = data[:ihdr_end] + _iccp_chunk(icc) + data[ihdr_end:]
    return data


def _encode_png_gray_alpha(arr: np.ndarray, icc: bytes | None) -> bytes:
    height, width = arr.shape[:2]
    depth = 16 if arr.dtype == np.uint16 else 8
    bpp = 2 * depth // 8
    raw = np.ascontiguousarray(arr.astype(">u2") if depth == 16 else arr).view(np.uint8).reshape(height, width * bpp)
    filtered = raw.copy()
    filtered[:, bpp:] -= raw[:, :-bpp]  # filter type 1 (Sub), modulo 256
    rows = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)
    idat = zlib.compress(rows.tobytes(), 6)
    out = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 4, 0, 0, 0))]
    if icc:
        out.append(_iccp_chunk(icc))
    out.extend(_png_chunk(b"IDAT", idat[i : i + _IDAT_CHUNK]) for i in range(0, len(idat), _IDAT_CHUNK))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def _encode_jpeg(path: str, arr: np.ndarray, icc: bytes | None, quality: int) -> bytes:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ImageError(f"{path}: JPEG quality must be an integer from 1 to 100, got {quality!r}")
    channels = arr.shape[2]
    if channels in (2, 4):
        raise ImageError(f"{path}: cannot write an image with alpha as JPEG (JPEG has no alpha; use PNG or TIFF)")
    if arr.dtype == np.uint16:
        arr = np.rint(arr.astype(np.float32) / 257.0).astype(np.uint8)
    elif arr.dtype.kind == "f":
        arr = _float_to_uint(arr, np.uint8)
    im = Image.fromarray(np.ascontiguousarray(arr[:, :, 0] if channels == 1 else arr), "L" if channels == 1 else "RGB")
    options: dict[str, object] = {"quality": quality}
    if quality >= 90:
        options["subsampling"] = 0
    if icc:
        options["icc_profile"] = icc
    buf = io.BytesIO()
    try:
        im.save(buf, format="JPEG", **options)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot encode JPEG ({_one_line(exc)})") from None
    return buf.getvalue()


def _write_tiff(f: BinaryIO, arr: np.ndarray, icc: bytes | None) -> None:
    channels = arr.shape[2]
    options: dict[str, object] = {
        "photometric": "rgb" if channels >= 3 else "minisblack",
        "compression": "zlib",
        "metadata": None,
    }
    if channels in (2, 4):
        options["extrasamples"] = ("unassalpha",)
        options["planarconfig"] = "contig"
    if icc:
        options["iccprofile"] = icc
    data = np.ascontiguousarray(arr[:, :, 0] if channels == 1 else arr)
    tifffile.imwrite(f, data, **options)


def _umask() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: str, writer: Callable[[BinaryIO], object]) -> None:
    """Write via `writer` into a temporary file beside `path`, fsync it, then rename it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ImageError(f"{path}: cannot write: it is a directory")
    if not os.path.isdir(directory):
        raise ImageError(f"{path}: cannot write: directory {directory} does not exist")
    name = os.path.basename(path)
    suffix = os.path.splitext(name)[1]
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", suffix=suffix, dir=directory)
    except OSError as exc:
        raise ImageError(f"{path}: cannot write in {directory}: {_one_line(exc)}") from None
    os.close(fd)  # reopened by name: tifffile wants a file object whose `name` is a path
    try:
        with open(tmp, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_umask()
        if sys.platform != "win32":
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, ImageError):
            raise
        if isinstance(exc, (OSError, ValueError, zlib.error, cv2.error)):
            raise ImageError(f"{path}: cannot write: {_one_line(exc)}") from None
        raise
    if sys.platform != "win32":
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
