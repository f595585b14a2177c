"""Tests for retouch.imageio: real files in tmp_path, round trips, metadata, errors, atomic writes."""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, JpegImagePlugin
from retouch import imageio
from retouch.errors import ImageError
from retouch.imageio import SUPPORTED_SUFFIXES, LoadedImage, read_image, write_image

H, W = 23, 31


@pytest.fixture(scope="module")
def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def random_pixels(dtype: type, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == np.float32:
        return rng.uniform(-0.5, 4.0, (H, W, channels)).astype(np.float32)  # HDR values must survive in TIFF
    top = np.iinfo(dtype).max
    arr = rng.integers(0, top, (H, W, channels), endpoint=True).astype(dtype)
    arr[0, 0] = 0
    arr[0, 1] = top
    return arr


def smooth_rgb(h: int = 64, w: int = 96) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 40 + 160 * x / w
    g = 60 + 120 * y / h
    b = 128 + 60 * np.sin(x / 15.0) * np.cos(y / 11.0)
    return np.rint(np.stack([r, g, b], axis=2)).astype(np.uint8)


def assert_one_line_naming(exc: pytest.ExceptionInfo[ImageError], path: Path) -> str:
    msg = str(exc.value)
    assert str(path) in msg
    assert "\n" not in msg
    return msg


def png_color_type(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[12:16] == b"IHDR"
    return data[24], data[25]  # bit depth, colour type


# --------------------------------------------------------------------------------------------------------------------
# round trips


def test_supported_suffixes() -> None:
    assert SUPPORTED_SUFFIXES == (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_exact(tmp_path: Path, dtype: type, channels: int) -> None:
    pixels = random_pixels(dtype, channels)
    path = tmp_path / "img.png"
    write_image(path, pixels)
    loaded = read_image(path)
    assert isinstance(loaded, LoadedImage)
    assert loaded.format == "PNG"
    assert loaded.icc_profile is None
    assert loaded.pixels.dtype == dtype
    assert loaded.pixels.shape == (H, W, channels)
    np.testing.assert_array_equal(loaded.pixels, pixels)
    depth, color = png_color_type(path)
    assert depth == np.dtype(dtype).itemsize * 8
    assert color == {1: 0, 2: 4, 3: 2, 4: 6}[channels]


@pytest.mark.parametrize("mode,channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)])
def test_png_u8_channel_order_matches_pillow(tmp_path: Path, mode: str, channels: int) -> None:
    pixels = random_pixels(np.uint8, channels, seed=3)
    path = tmp_path / "img.png"
    write_image(path, pixels)
    with Image.open(path) as im:
        assert im.mode == mode
        np.testing.assert_array_equal(np.asarray(im).reshape(H, W, channels), pixels)
    # and a file Pillow wrote reads back the same
    other = tmp_path / "pil.png"
    Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels, mode).save(other)
    np.testing.assert_array_equal(read_image(other).pixels, pixels)


@pytest.mark.parametrize("channels", [3, 4])
def test_png_u16_channel_order_matches_opencv(tmp_path: Path, channels: int) -> None:
    pixels = random_pixels(np.uint16, channels, seed=4)
    path = tmp_path / "img.png"
    write_image(path, pixels)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw[:, :, [2, 1, 0] + ([3] if channels == 4 else [])], pixels)


def test_png_accepts_2d_gray(tmp_path: Path) -> None:
    pixels = random_pixels(np.uint16, 1)[:, :, 0]
    path = tmp_path / "g.png"
    write_image(path, pixels)
    np.testing.assert_array_equal(read_image(path).pixels, pixels[:, :, None])


def test_png_float_becomes_16_bit(tmp_path: Path) -> None:
    pixels = np.array([[[-0.5, 0.0, 0.25], [0.5, 1.0, 7.0]]], dtype=np.float32)
    path = tmp_path / "f.png"
    write_image(path, pixels)
    loaded = read_image(path)
    assert loaded.pixels.dtype == np.uint16
    np.testing.assert_array_equal(loaded.pixels, [[[0, 0, 16384], [32768, 65535, 65535]]])


@pytest.mark.parametrize("suffix", [".tif", ".tiff"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_round_trip_exact(tmp_path: Path, dtype: type, channels: int, suffix: str) -> None:
    pixels = random_pixels(dtype, channels, seed=5)
    path = tmp_path / f"img{suffix}"
    write_image(path, pixels)
    loaded = read_image(path)
    assert loaded.format == "TIFF"
    assert loaded.pixels.dtype == dtype
    assert loaded.pixels.shape == (H, W, channels)
    np.testing.assert_array_equal(loaded.pixels, pixels)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.photometric == (tifffile.PHOTOMETRIC.RGB if channels >= 3 else tifffile.PHOTOMETRIC.MINISBLACK)
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tuple(page.extrasamples) == ((tifffile.EXTRASAMPLE.UNASSALPHA,) if channels in (2, 4) else ())
        np.testing.assert_array_equal(page.asarray().reshape(H, W, channels), pixels)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_tiff_other_floats_read_as_float32(tmp_path: Path, dtype: type) -> None:
    pixels = np.linspace(-1, 2, H * W * 3).reshape(H, W, 3).astype(dtype)
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, pixels, photometric="rgb")
    loaded = read_image(path)
    assert loaded.pixels.dtype == np.float32
    np.testing.assert_array_equal(loaded.pixels, pixels.astype(np.float32))


def test_tiff_write_float64_stored_as_float32(tmp_path: Path) -> None:
    pixels = np.linspace(-1, 2, H * W * 3).reshape(H, W, 3)
    path = tmp_path / "f.tif"
    write_image(path, pixels)
    loaded = read_image(path)
    assert loaded.pixels.dtype == np.float32
    np.testing.assert_array_equal(loaded.pixels, pixels.astype(np.float32))


def test_tiff_planar_separate_normalised(tmp_path: Path) -> None:
    pixels = random_pixels(np.uint16, 4, seed=6)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(
        path, np.moveaxis(pixels, 2, 0), photometric="rgb", planarconfig="separate", extrasamples=("unassalpha",)
    )
    loaded = read_image(path)
    assert loaded.pixels.shape == (H, W, 4)
    np.testing.assert_array_equal(loaded.pixels, pixels)


def test_tiff_lzw_written_by_pillow(tmp_path: Path) -> None:
    pixels = random_pixels(np.uint8, 3, seed=7)
    path = tmp_path / "lzw.tif"
    Image.fromarray(pixels).save(path, compression="tiff_lzw")
    loaded = read_image(path)
    assert loaded.format == "TIFF"
    np.testing.assert_array_equal(loaded.pixels, pixels)


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg"])
def test_jpeg_round_trip_within_tolerance(tmp_path: Path, suffix: str) -> None:
    pixels = smooth_rgb()
    path = tmp_path / f"img{suffix}"
    write_image(path, pixels)
    loaded = read_image(path)
    assert loaded.format == "JPEG"
    assert loaded.pixels.dtype == np.uint8
    assert loaded.pixels.shape == pixels.shape
    assert np.abs(loaded.pixels.astype(int) - pixels).mean() < 3


def test_jpeg_gray_round_trip(tmp_path: Path) -> None:
    pixels = smooth_rgb()[:, :, 1:2]
    path = tmp_path / "g.jpg"
    write_image(path, pixels)
    loaded = read_image(path)
    assert loaded.pixels.shape == pixels.shape
    assert np.abs(loaded.pixels.astype(int) - pixels).mean() < 3


def test_jpeg_from_16_bit_and_float(tmp_path: Path) -> None:
    pixels = smooth_rgb()
    write_image(tmp_path / "a.jpg", pixels.astype(np.uint16) * 257)
    write_image(tmp_path / "b.jpg", pixels.astype(np.float32) / 255.0)
    for name in ("a.jpg", "b.jpg"):
        loaded = read_image(tmp_path / name)
        assert loaded.pixels.dtype == np.uint8
        assert np.abs(loaded.pixels.astype(int) - pixels).mean() < 3


def test_jpeg_quality_and_subsampling(tmp_path: Path) -> None:
    pixels = random_pixels(np.uint8, 3, seed=8)
    hi, lo = tmp_path / "hi.jpg", tmp_path / "lo.jpg"
    write_image(hi, pixels, jpeg_quality=95)
    write_image(lo, pixels, jpeg_quality=60)
    with Image.open(hi) as im:
        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4
    with Image.open(lo) as im:
        assert JpegImagePlugin.get_sampling(im) != 0
    assert lo.stat().st_size < hi.stat().st_size


def test_jpeg_exif_orientation_applied(tmp_path: Path) -> None:
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (255, 0, 0)  # left half red
    stored[:, 20:] = (0, 0, 255)  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display = stored rotated 90 degrees clockwise
    path = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    loaded = read_image(path)
    assert loaded.pixels.shape == (40, 20, 3)
    top, bottom = loaded.pixels[:18].reshape(-1, 3).mean(0), loaded.pixels[22:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50  # red went to the top
    assert bottom[2] > 200 and bottom[0] < 50


def test_cmyk_jpeg_becomes_rgb_without_profile(tmp_path: Path, srgb_icc: bytes) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(smooth_rgb()).convert("CMYK").save(path, quality=95, icc_profile=srgb_icc)
    loaded = read_image(path)
    assert loaded.pixels.shape == (64, 96, 3)
    assert loaded.icc_profile is None
    assert np.abs(loaded.pixels.astype(int) - smooth_rgb()).mean() < 6


def test_palette_png_becomes_rgb_or_rgba(tmp_path: Path) -> None:
    rgb = smooth_rgb()
    pal = Image.fromarray(rgb).quantize(16)
    expected = np.asarray(pal.convert("RGB"))
    path = tmp_path / "p.png"
    pal.save(path)
    loaded = read_image(path)
    assert loaded.pixels.shape == (64, 96, 3)
    np.testing.assert_array_equal(loaded.pixels, expected)
    pal.save(path, transparency=0)
    loaded = read_image(path)
    assert loaded.pixels.shape == (64, 96, 4)
    idx = np.asarray(pal)
    np.testing.assert_array_equal(loaded.pixels[:, :, 3], np.where(idx == 0, 0, 255))
    np.testing.assert_array_equal(loaded.pixels[:, :, :3], expected)


def test_format_from_suffix_case_insensitive(tmp_path: Path) -> None:
    pixels = smooth_rgb()
    for name, magic in (("a.PNG", b"\x89PNG"), ("b.JPG", b"\xff\xd8\xff"), ("c.TiFf", b"II*\x00")):
        write_image(tmp_path / name, pixels)
        assert (tmp_path / name).read_bytes().startswith(magic)
        assert read_image(tmp_path / name).pixels.shape == pixels.shape


def test_mislabelled_file_read_by_content(tmp_path: Path) -> None:
    path = tmp_path / "actually_jpeg.png"
    Image.fromarray(smooth_rgb()).save(path, format="JPEG", quality=95)
    assert read_image(path).format == "JPEG"


# --------------------------------------------------------------------------------------------------------------------
# ICC profiles


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_icc_preserved(tmp_path: Path, srgb_icc: bytes, dtype: type, channels: int) -> None:
    pixels = random_pixels(dtype, channels, seed=9)
    path = tmp_path / "icc.png"
    write_image(path, pixels, srgb_icc)
    loaded = read_image(path)
    assert loaded.icc_profile == srgb_icc
    np.testing.assert_array_equal(loaded.pixels, pixels)
    data = path.read_bytes()
    assert data.index(b"iCCP") < data.index(b"IDAT")
    with Image.open(path) as im:  # an independent reader accepts the spliced chunk
        assert im.info.get("icc_profile") == srgb_icc
        im.load()


def test_png_icc_written_by_pillow_is_read(tmp_path: Path, srgb_icc: bytes) -> None:
    path = tmp_path / "pil.png"
    Image.fromarray(smooth_rgb()).save(path, icc_profile=srgb_icc)
    assert read_image(path).icc_profile == srgb_icc


def test_jpeg_icc_preserved(tmp_path: Path, srgb_icc: bytes) -> None:
    path = tmp_path / "icc.jpg"
    write_image(path, smooth_rgb(), srgb_icc)
    assert read_image(path).icc_profile == srgb_icc
    with Image.open(path) as im:
        assert im.info.get("icc_profile") == srgb_icc


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_icc_preserved(tmp_path: Path, srgb_icc: bytes, dtype: type) -> None:
    pixels = random_pixels(dtype, 4, seed=10)
    path = tmp_path / "icc.tif"
    write_image(path, pixels, srgb_icc)
    loaded = read_image(path)
    assert loaded.icc_profile == srgb_icc
    np.testing.assert_array_equal(loaded.pixels, pixels)
    with tifffile.TiffFile(path) as tif:
        assert bytes(tif.pages[0].tags[34675].value) == srgb_icc


def test_no_icc_is_none(tmp_path: Path) -> None:
    for name in ("a.png", "a.jpg", "a.tif"):
        write_image(tmp_path / name, smooth_rgb())
        assert read_image(tmp_path / name).icc_profile is None


# --------------------------------------------------------------------------------------------------------------------
# errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "not found" in assert_one_line_naming(exc, path)


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "dir.png"
    path.mkdir()
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "directory" in assert_one_line_naming(exc, path)
    with pytest.raises(ImageError) as exc:
        write_image(path, smooth_rgb())
    assert "directory" in assert_one_line_naming(exc, path)


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n" * 10])
def test_not_an_image(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "text.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "not an image" in assert_one_line_naming(exc, path)


@pytest.mark.parametrize("name", ["t.png", "t.jpg", "t.tif"])
def test_truncated(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_image(path, random_pixels(np.uint8, 3, seed=11))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if name != "t.tif" else data[: len(data) - 200])
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "truncated" in assert_one_line_naming(exc, path)


def test_corrupt_png_crc(tmp_path: Path) -> None:
    path = tmp_path / "c.png"
    write_image(path, random_pixels(np.uint8, 3, seed=12))
    data = bytearray(path.read_bytes())
    data[data.index(b"IDAT") + 20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "corrupt" in assert_one_line_naming(exc, path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "img.bmp"
    Image.fromarray(smooth_rgb()).save(path)
    with pytest.raises(ImageError) as exc:
        read_image(path)
    msg = assert_one_line_naming(exc, path)
    assert ".bmp" in msg and ".png" in msg and ".tiff" in msg
    with pytest.raises(ImageError) as exc:
        write_image(tmp_path / "out.webp", smooth_rgb())
    assert ".webp" in assert_one_line_naming(exc, tmp_path / "out.webp")
    assert not (tmp_path / "out.webp").exists()


def test_one_bit_png_and_tiff_refused(tmp_path: Path) -> None:
    bits = smooth_rgb()[:, :, 0] > 100
    for name in ("bits.png", "bits.tif"):
        path = tmp_path / name
        Image.fromarray(bits).save(path)
        with pytest.raises(ImageError) as exc:
            read_image(path)
        assert "1-bit" in assert_one_line_naming(exc, path)


def test_signed_tiff_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, np.zeros((4, 5), np.int16))
    with pytest.raises(ImageError) as exc:
        read_image(path)
    assert "int16" in assert_one_line_naming(exc, path)


def test_missing_destination_directory(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "out.png"
    with pytest.raises(ImageError) as exc:
        write_image(path, smooth_rgb())
    msg = assert_one_line_naming(exc, path)
    assert str(tmp_path / "no" / "such") in msg
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize(
    "name,pixels,words",
    [
        ("a.jpg", np.zeros((4, 5, 4), np.uint8), "alpha"),
        ("b.png", np.zeros((4, 5, 3), np.int32), "int32"),
        ("c.tif", np.zeros((4, 5, 5), np.uint8), "shape"),
        ("d.png", np.zeros((0, 5, 3), np.uint8), "empty"),
    ],
)
def test_write_refusals(tmp_path: Path, name: str, pixels: np.ndarray, words: str) -> None:
    path = tmp_path / name
    with pytest.raises(ImageError) as exc:
        write_image(path, pixels)
    assert words in assert_one_line_naming(exc, path)
    assert os.listdir(tmp_path) == []


def test_bad_jpeg_quality(tmp_path: Path) -> None:
    path = tmp_path / "q.jpg"
    with pytest.raises(ImageError) as exc:
        write_image(path, smooth_rgb(), jpeg_quality=0)
    assert "quality" in assert_one_line_naming(exc, path)


# --------------------------------------------------------------------------------------------------------------------
# atomic writes


def test_overwrite_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.png"
    path.write_bytes(b"old")
    pixels = random_pixels(np.uint8, 3, seed=13)
    write_image(path, pixels)
    np.testing.assert_array_equal(read_image(path).pixels, pixels)
    assert os.listdir(tmp_path) == ["out.png"]


def test_new_file_not_private(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    write_image(path, smooth_rgb())
    mode = stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_failed_tiff_write_keeps_old_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.tif"
    write_image(path, smooth_rgb())
    before = path.read_bytes()
    seen: list[str] = []

    def broken(f: BinaryIO, data: np.ndarray, **kwargs: object) -> None:
        f.write(b"II*\x00 partial data")
        seen.append(f.name)
        raise OSError("disk full")

    monkeypatch.setattr(imageio.tifffile, "imwrite", broken)
    with pytest.raises(ImageError) as exc:
        write_image(path, random_pixels(np.uint16, 3))
    assert "disk full" in assert_one_line_naming(exc, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.tif"]
    assert seen and os.path.dirname(seen[0]) == str(tmp_path) and seen[0].endswith(".tif")


def test_failed_write_with_unexpected_error_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "out.tiff"
    path.write_bytes(b"precious")

    def broken(f: BinaryIO, data: np.ndarray, **kwargs: object) -> None:
        f.write(b"half")
        raise RuntimeError("boom")

    monkeypatch.setattr(imageio.tifffile, "imwrite", broken)
    with pytest.raises(RuntimeError, match="boom"):
        write_image(path, smooth_rgb())
    assert path.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["out.tiff"]


@pytest.mark.parametrize("name", ["out.png", "out.jpg"])
def test_failed_fsync_keeps_old_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = tmp_path / name
    write_image(path, smooth_rgb())
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError("I/O error")

    monkeypatch.setattr(imageio.os, "fsync", broken_fsync)
    with pytest.raises(ImageError) as exc:
        write_image(path, random_pixels(np.uint8, 3))
    assert "I/O error" in assert_one_line_naming(exc, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == [name]


def test_png_chunks_are_valid(tmp_path: Path, srgb_icc: bytes) -> None:
    path = tmp_path / "la.png"
    write_image(path, random_pixels(np.uint16, 2, seed=14), srgb_icc)
    data = path.read_bytes()
    pos, types = 8, []
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        ctype, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        assert zlib.crc32(ctype + body) == int.from_bytes(data[pos + 8 + length : pos + 12 + length], "big")
        types.append(ctype)
        pos += 12 + length
    assert types[0] == b"IHDR" and types[1] == b"iCCP" and types[-1] == b"IEND"
