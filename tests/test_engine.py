"""Tests for retouch.engine (tiling, out-of-memory fallback, model cache, loader, registry) and retouch.pixels.

In-process, no daemon. The builtin models are being retrained: nothing here judges image quality, only shapes,
dtypes, error messages and equality between code paths (tiled vs untiled, ONNX vs torch, round trips).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from onnx_export import save_onnx
from retouch.engine import MIN_TILE, Engine, LoadedModel, ModelSpec, RunInfo, is_oom, loader, registry, tiling
from retouch.engine.device import cpu_has_bf16
from retouch.errors import UnknownModel, UnsupportedModel
from retouch.pixels import NUMPY_DTYPES, decode_image, encode_image, frame_to_array
from retouch.protocol import ImageSpec

BUILTIN_NAMES = ("retouch-upscale-x2", "retouch-upscale-x4")


# --------------------------------------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One CPU engine for the module (loading the model is the slow part)."""
    with pytest.MonkeyPatch.context() as mp:  # the autouse fixture is function-scoped; keep the user's dir out
        mp.setenv("RETOUCH_MODELS_DIR", str(tmp_path_factory.mktemp("engine-models")))
        yield Engine(device="cpu")


@pytest.fixture(scope="module")
def x2(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETOUCH_MODELS_DIR", str(tmp_path_factory.mktemp("engine-models-x2")))
        return engine.get(registry.resolve("retouch-upscale-x2"))


def gradient(h: int, w: int) -> np.ndarray:
    """A smooth flat ramp (horizontal + vertical), values 0.2 .. 0.8, H x W x 3 float32."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    fx, fy = x / (w - 1), y / (h - 1)
    r = 0.2 + 0.6 * fx
    g = 0.2 + 0.6 * fy
    b = 0.2 + 0.3 * fx + 0.3 * fy
    return np.ascontiguousarray(np.stack([r, g, b], axis=2), dtype=np.float32)


def nearest2(tile: np.ndarray) -> np.ndarray:
    """An identity-like scale-2 'model': nearest-neighbour repeat."""
    return np.repeat(np.repeat(tile, 2, axis=0), 2, axis=1)


class OOMWrapper:
    """Forwards to a real loaded model, but raises out-of-memory for tiles larger than `limit` pixels."""

    def __init__(self, model: LoadedModel, limit: int | None, error: BaseException | None = None,
                 device: torch.device | None = None) -> None:
        self.model = model
        self.limit = limit  # None: always fail
        self.error = error if error is not None else torch.OutOfMemoryError("CUDA out of memory")
        self.scale = model.scale
        self.path = model.path
        self.dtype = model.dtype
        self.device = device if device is not None else model.device
        self.calls: list[tuple[int, int]] = []

    @property
    def device_name(self) -> str:
        return "cpu" if self.device.type == "cpu" else f"fake:{self.device}"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        self.calls.append(tile.shape[:2])
        if self.limit is None or max(tile.shape[:2]) > self.limit:
            raise self.error
        return self.model(tile)


# --------------------------------------------------------------------------------------------------------------------
# tiling with the real model: no seams


@pytest.mark.parametrize(
    ("h", "w", "tile"),
    [
        (128, 160, 64),  # tiled, overlap 32 (tile // 2)
        (128, 160, 48),  # tiled, overlap 24
        (72, 136, 48),  # non-square, tiles of the last row/column shifted to end at the border
        (136, 72, 64),  # non-square the other way
    ],
)
def test_tiled_real_model_equals_untiled(engine: Engine, x2: LoadedModel, h: int, w: int, tile: int) -> None:
    img = gradient(h, w)
    tiled, info_t = engine.run(x2, img, tile=tile)
    whole, info_w = engine.run(x2, img, tile=1024)
    assert info_w.tiles == 1
    assert info_t.tiles == tiling.count_tiles(h, w, tile, min(32, tile // 2)) > 1
    assert info_t.tile == tile and info_t.retries == 0
    assert tiled.shape == whole.shape == (2 * h, 2 * w, 3)
    assert tiled.dtype == whole.dtype == np.float32
    assert np.isfinite(tiled).all()
    diff = float(np.abs(tiled - whole).max())
    assert diff <= 1 / 255, f"seams: max abs difference {diff * 255:.3f}/255 between tiled and untiled"


def test_run_reports_tile_progress(engine: Engine, x2: LoadedModel) -> None:
    seen: list[tuple[int, int]] = []
    out, info = engine.run(x2, gradient(64, 96), tile=32, on_tile=lambda d, t: seen.append((d, t)))
    assert out.shape == (128, 192, 3)
    assert info.tiles == len(seen) > 1
    assert seen == [(i, info.tiles) for i in range(1, info.tiles + 1)]
    assert isinstance(info, RunInfo) and info.model == "retouch-upscale-x2" and info.device == "cpu"


def test_run_on_tile_exception_stops_the_run(engine: Engine, x2: LoadedModel) -> None:
    class Stop(Exception):
        pass

    def on_tile(done: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        engine.run(x2, gradient(64, 64), tile=32, on_tile=on_tile)


# --------------------------------------------------------------------------------------------------------------------
# tiling with a synthetic model: the blend weights are exact


@pytest.mark.parametrize("tile", [8, 16, 17, 32, 33, 48, 64, 100, 123])
@pytest.mark.parametrize("overlap", [0, 1, 8, 16, 32])
def test_run_tiled_identity_is_exact(tile: int, overlap: int) -> None:
    rng = np.random.default_rng(tile * 100 + overlap)
    img = rng.random((77, 123, 3), dtype=np.float32)
    calls = []

    def fn(t: np.ndarray) -> np.ndarray:
        calls.append(t.shape)
        return nearest2(t)

    out = tiling.run_tiled(img, fn, 2, tile, overlap=overlap)
    assert out.shape == (154, 246, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, nearest2(img), rtol=0, atol=1e-6)
    assert len(calls) == tiling.count_tiles(77, 123, tile, min(overlap, tile // 2))


@pytest.mark.parametrize("pad", [0, 3, 8, 20])
def test_run_tiled_identity_any_pad_and_channels(pad: int) -> None:
    rng = np.random.default_rng(pad)
    img = rng.random((50, 70, 4), dtype=np.float32)  # the output channel count comes from fn
    out = tiling.run_tiled(img, nearest2, 2, 24, overlap=8, pad=pad)
    np.testing.assert_allclose(out, nearest2(img), rtol=0, atol=1e-6)


def test_run_tiled_single_tile_calls_fn_once_on_the_whole_image() -> None:
    img = gradient(40, 60)
    seen = []
    out = tiling.run_tiled(img, lambda t: (seen.append(t.shape), nearest2(t))[1], 2, 64,
                           on_tile=lambda d, t: seen.append((d, t)))
    assert seen == [(40, 60, 3), (1, 1)]
    np.testing.assert_array_equal(out, nearest2(img))


@pytest.mark.parametrize("length", [1, 2, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 513])
@pytest.mark.parametrize(("tile", "overlap"), [(1, 0), (8, 0), (16, 4), (32, 16), (48, 24), (64, 32), (64, 0),
                                               (100, 31), (128, 32)])
def test_tile_starts_cover_everything(length: int, tile: int, overlap: int) -> None:
    starts = tiling.tile_starts(length, tile, overlap)
    assert starts[0] == 0
    assert starts == sorted(set(starts))
    covered = np.zeros(length, bool)
    for s in starts:
        assert 0 <= s
        covered[s : s + tile] = True
    assert covered.all(), f"pixels not covered: {np.flatnonzero(~covered)[:10]}"
    if length <= tile:
        assert starts == [0]
    else:
        assert starts[-1] + tile == length, "the last tile must end at the border"
    for a, b in itertools.pairwise(starts):
        assert 0 < b - a <= tile - overlap, f"step {b - a} exceeds tile - overlap = {tile - overlap}"
    assert tiling.count_tiles(length, 7, tile, overlap) == len(starts) * len(tiling.tile_starts(7, tile, overlap))


# --------------------------------------------------------------------------------------------------------------------
# out of memory


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory"), MemoryError(),
                                   RuntimeError("DefaultCPUAllocator: can't allocate: out of memory")])
def test_oom_halves_the_tile_until_it_fits(engine: Engine, x2: LoadedModel, error: BaseException) -> None:
    # a tile of 40 is read with up to 8 px of context on each side: at most 56 px reach the model
    wrapper = OOMWrapper(x2, limit=56, error=error)
    img = gradient(100, 100)
    out, info = engine.run(wrapper, img, tile=160)  # type: ignore[arg-type]
    assert out.shape == (200, 200, 3) and out.dtype == np.float32
    assert info.tile <= 40
    assert info.retries >= 2
    assert info.tile == 40 and info.retries == 2  # 160 -> 80 -> 40
    assert info.tiles == tiling.count_tiles(100, 100, 40, 20)
    assert max(max(s) for s in wrapper.calls[-info.tiles :]) <= 56
    # the retried run gives what a plain run at that tile size gives
    ref, _ = engine.run(x2, img, tile=40)
    np.testing.assert_array_equal(out, ref)


def test_oom_every_time_ends_with_the_error(engine: Engine, x2: LoadedModel) -> None:
    wrapper = OOMWrapper(x2, limit=None)
    with pytest.raises(torch.OutOfMemoryError):
        engine.run(wrapper, gradient(100, 100), tile=160)  # type: ignore[arg-type]
    # 160, 80, 40 tried once each (a failing tile ends that attempt); 20 < MIN_TILE is never tried
    assert len(wrapper.calls) == 3
    assert min(max(s) for s in wrapper.calls) >= MIN_TILE


def test_non_oom_error_propagates_at_once(engine: Engine, x2: LoadedModel) -> None:
    wrapper = OOMWrapper(x2, limit=None, error=ValueError("bad weights"))
    with pytest.raises(ValueError, match="bad weights"):
        engine.run(wrapper, gradient(100, 100), tile=160)  # type: ignore[arg-type]
    assert len(wrapper.calls) == 1  # no retry


def test_oom_on_gpu_at_smallest_tile_falls_back_to_cpu(
    engine: Engine, x2: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)  # no CUDA here; the wrapper only pretends

    class GpuPretender(OOMWrapper):
        def __call__(self, tile: np.ndarray) -> np.ndarray:
            self.calls.append(tile.shape[:2])
            if self.device.type != "cpu":
                raise self.error
            return self.model(tile)

    wrapper = GpuPretender(x2, limit=None, device=torch.device("cuda"))
    out, info = engine.run(wrapper, gradient(64, 64), tile=128)  # type: ignore[arg-type]
    assert out.shape == (128, 128, 3)
    assert info.device == "cpu"
    assert info.retries == 3  # 128 -> 64 -> 32 -> CPU
    # the fallback runs a CPU copy from the cache; the "GPU" model itself stays where it was for later jobs
    assert wrapper.device.type == "cuda"
    assert engine.get(ModelSpec("x2", wrapper.path, False), torch.device("cpu")).device.type == "cpu"


def test_is_oom() -> None:
    assert is_oom(torch.OutOfMemoryError("x"))
    assert is_oom(MemoryError())
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(RuntimeError("onnxruntime: Failed to allocate memory for requested buffer"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("bad"))


# --------------------------------------------------------------------------------------------------------------------
# model cache


def test_get_caches_the_model() -> None:
    eng = Engine(device="cpu")
    spec = registry.resolve("retouch-upscale-x2")
    a = eng.get(spec)
    b = eng.get(registry.resolve("retouch-upscale-x2"))
    assert a is b
    assert eng.loads == 1
    assert eng.loaded() == [str(spec.path)]
    assert a.scale == 2 and a.backend == "torch" and a.input_channels == 3
    assert a.dtype == ("bf16" if cpu_has_bf16() else "fp32")  # auto precision on the CPU
    assert a.device == torch.device("cpu") and a.device_name == "cpu"


def test_cache_evicts_least_recently_used() -> None:
    eng = Engine(device="cpu", max_loaded=1)
    s2, s4 = registry.resolve("retouch-upscale-x2"), registry.resolve("retouch-upscale-x4")
    m2 = eng.get(s2)
    m4 = eng.get(s4)
    assert m4.scale == 4
    assert eng.loaded() == [str(s4.path)]
    assert eng.get(s2) is not m2
    assert eng.loads == 3


def test_default_tile_is_sane(engine: Engine, x2: LoadedModel) -> None:
    tile = engine.default_tile(x2)
    assert MIN_TILE * 4 <= tile <= 2048 and tile % 32 == 0


GIB = 1 << 30


@pytest.mark.parametrize(("budget", "used", "free"), [(8, 0.5, 70), (2, 0.5, 70), (8, 0.5, 3), (1, 0.9, 70)])
def test_gpu_tile_obeys_the_vram_budget(x2: LoadedModel, monkeypatch: pytest.MonkeyPatch, budget: float,
                                        used: float, free: float) -> None:
    """On a GPU the tile (with its context) costs at most what is left of the budget after the loaded weights, and
    of the card's free memory; the next size up would not fit. The planner's arithmetic runs here on a CUDA memory
    API that answers the given figures (benchmarks/gpu_speed.py measures the real peaks on a GPU)."""
    import dataclasses

    from retouch.engine import MAX_TILE, VRAM_MARGIN

    per_px = 6000.0  # bytes per input pixel at the peak, as gpu_bytes_per_pixel measures it
    eng = Engine(device="cpu", vram_budget=int(budget * GIB))
    gpu = dataclasses.replace(x2, device=torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: int(used * GIB))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free * GIB), 80 * GIB))
    monkeypatch.setattr(eng, "gpu_bytes_per_pixel", lambda model: per_px)
    tile = eng.default_tile(gpu)
    room = min((budget - used) * GIB, free * GIB * 0.9)

    def cost(t: int) -> float:
        return (t + 2 * gpu.context) ** 2 * per_px * VRAM_MARGIN

    assert tile % 32 == 0 and MIN_TILE <= tile <= MAX_TILE
    assert cost(tile) <= room
    assert tile == MAX_TILE or cost(tile + 32) > room
    smaller = Engine(device="cpu", vram_budget=int(budget * GIB / 4))
    monkeypatch.setattr(smaller, "gpu_bytes_per_pixel", lambda model: per_px)
    assert smaller.default_tile(gpu) <= tile


# --------------------------------------------------------------------------------------------------------------------
# loader


def _random_bytes(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load is tried on .pt files and warns
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("random.pth", _random_bytes(4096, 1)),
        ("random.pt", _random_bytes(300, 2)),
        ("text.safetensors", b"this is a text file, not safetensors\n" * 4),
        ("garbage.onnx", _random_bytes(2048, 3)),
        ("empty.ckpt", b""),
        ("weird.bin", b"xx"),
    ],
    ids=["random-pth", "random-pt", "text-safetensors", "garbage-onnx", "empty-ckpt", "unknown-suffix"],
)
def test_loader_refuses_bad_files(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnsupportedModel) as exc:
        loader.load_model(path, torch.device("cpu"))
    assert name in exc.value.message
    assert exc.value.code == "unsupported_model"


def test_loader_refuses_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nothere.pth"
    with pytest.raises(UnsupportedModel) as exc:
        loader.load_model(path, torch.device("cpu"))
    assert "nothere.pth" in exc.value.message


def test_loader_refuses_a_directory(tmp_path: Path) -> None:
    path = tmp_path / "dir.safetensors"
    path.mkdir()
    with pytest.raises(UnsupportedModel, match="dir.safetensors"):
        loader.load_model(path, torch.device("cpu"))


def _export_tiny_onnx(path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2)).eval()
    with torch.no_grad():  # keep the outputs inside [0, 1] mostly, so the comparison is not all clipping
        net[0].weight.mul_(0.3)
        net[0].bias.fill_(0.3)
    save_onnx(net, path)
    return net


def test_onnx_model_loads_and_matches_torch(tmp_path: Path) -> None:
    path = tmp_path / "tiny-x2.onnx"
    net = _export_tiny_onnx(path)
    model = loader.load_model(path, torch.device("cpu"))
    assert model.backend == "onnx"
    assert model.scale == 2
    assert model.input_channels == 3 and model.output_channels == 3
    assert model.device_name == "onnx:cpu"
    x = np.random.default_rng(0).random((21, 30, 3), dtype=np.float32)
    y = model(x)
    assert y.shape == (42, 60, 3) and y.dtype == np.float32
    with torch.no_grad():
        ref = net(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(y, np.clip(ref, 0, 1), rtol=0, atol=1e-4)

    # and through the engine, tiled, with the same result as untiled (a pointwise-ish 3x3 net: exact up to pad)
    eng = Engine(device="cpu")
    img = gradient(70, 90)
    tiled, info = eng.run(model, img, tile=32)
    whole, _ = eng.run(model, img, tile=1024)
    assert info.tiles > 1 and info.device == "onnx:cpu" and info.model == "tiny-x2"
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_onnx_model_in_models_dir_is_resolved(tmp_path: Path) -> None:
    folder = Path(os.environ["RETOUCH_MODELS_DIR"])
    _export_tiny_onnx(folder / "my-onnx-x2.onnx")
    spec = registry.resolve("my-onnx-x2")
    eng = Engine(device="cpu")
    model = eng.get(spec)
    assert model.backend == "onnx" and model.scale == 2


# --------------------------------------------------------------------------------------------------------------------
# registry


def test_builtin_models_listed() -> None:
    specs = {s.name: s for s in registry.list_models()}
    for name in BUILTIN_NAMES:
        assert name in specs
        spec = specs[name]
        assert spec.builtin and spec.task == "upscale" and spec.path.is_file()
        assert spec.scale == int(name[-1])
        assert spec.to_wire()["path"] == str(spec.path)


def test_user_model_dropped_in_folder_is_listed_and_resolved() -> None:
    folder = Path(os.environ["RETOUCH_MODELS_DIR"])
    (folder / "my-upscaler.pth").write_bytes(b"not really a model")
    (folder / "notes.txt").write_text("not a model file")
    (folder / "sub.onnx").mkdir()  # a folder with a model suffix is not a model
    specs = {s.name: s for s in registry.list_models()}
    assert "my-upscaler" in specs
    assert "notes" not in specs and "sub" not in specs
    spec = registry.resolve("my-upscaler")
    assert spec.builtin is False
    assert spec.path == folder / "my-upscaler.pth"
    assert spec.task is None


def test_user_file_cannot_shadow_a_builtin() -> None:
    folder = Path(os.environ["RETOUCH_MODELS_DIR"])
    (folder / "retouch-upscale-x2.pth").write_bytes(b"impostor")
    spec = registry.resolve("retouch-upscale-x2")
    assert spec.builtin and spec.path.parent == registry.BUILTIN_DIR
    assert [s.name for s in registry.list_models()].count("retouch-upscale-x2") == 1


def test_resolve_by_path(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.safetensors"
    path.write_bytes(b"x")
    spec = registry.resolve(str(path))
    assert spec.path == path.resolve() and spec.name == "elsewhere" and not spec.builtin


def test_resolve_unknown_lists_builtin_names() -> None:
    with pytest.raises(UnknownModel) as exc:
        registry.resolve("nope")
    msg = exc.value.message
    assert "nope" in msg
    for name in BUILTIN_NAMES:
        assert name in msg
    assert exc.value.code == "unknown_model"


def test_models_dir_override() -> None:
    assert registry.user_models_dir() == Path(os.environ["RETOUCH_MODELS_DIR"])


# --------------------------------------------------------------------------------------------------------------------
# pixels


def _random_frame(dtype: str, channels: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    npd = NUMPY_DTYPES[dtype]
    if dtype in ("u8", "u16"):
        top = 255 if dtype == "u8" else 65535
        arr = rng.integers(0, top, (h, w, channels), endpoint=True).astype(npd)
        arr.flat[0] = 0
        arr.flat[1] = top
        return arr
    return rng.random((h, w, channels)).astype(npd)


DTYPES = ("u8", "u16", "f16", "f32")
ORDERS = ("RGBA", "BGRA", "RGB", "GRAY")
TRANSFERS = ("srgb", "linear")


@pytest.mark.parametrize(("dtype", "order", "transfer"), list(itertools.product(DTYPES, ORDERS, TRANSFERS)))
def test_decode_encode_round_trip(dtype: str, order: str, transfer: str) -> None:
    h, w = 9, 13
    spec = ImageSpec(w, h, dtype, order, transfer, 0)
    arr = _random_frame(dtype, spec.channels, h, w)
    frame = arr.tobytes()
    img = decode_image(spec, frame)
    assert img.color.shape == (h, w, 3) and img.color.dtype == np.float32
    assert img.color.flags.c_contiguous
    assert img.gray == (order == "GRAY")
    if order in ("RGBA", "BGRA"):
        assert img.alpha is not None and img.alpha.shape == (h, w) and img.alpha.dtype == np.float32
    else:
        assert img.alpha is None
    out_spec, out = encode_image(img, spec)
    assert out_spec == spec
    if dtype in ("u8", "u16"):
        assert out == frame
    else:
        back = np.frombuffer(out, NUMPY_DTYPES[dtype]).reshape(arr.shape).astype(np.float64)
        tol = 1e-3 if dtype == "f16" else 1e-6
        np.testing.assert_allclose(back, arr.astype(np.float64), rtol=0, atol=tol)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("transfer", TRANSFERS)
def test_every_u16_value_round_trips(order: str, transfer: str) -> None:
    channels = ImageSpec(1, 1, "u16", order).channels
    values = np.arange(65536, dtype=np.uint16)
    arr = np.stack([np.roll(values, 4099 * k) for k in range(channels)], axis=1).reshape(256, 256, channels)
    spec = ImageSpec(256, 256, "u16", order, transfer, 0)
    frame = arr.astype("<u2").tobytes()
    assert encode_image(decode_image(spec, frame), spec)[1] == frame


def test_decode_channel_order_and_scale() -> None:
    px = np.array([[[10, 20, 30, 40]]], np.uint8)
    rgba = decode_image(ImageSpec(1, 1, "u8", "RGBA"), px.tobytes())
    bgra = decode_image(ImageSpec(1, 1, "u8", "BGRA"), px.tobytes())
    np.testing.assert_allclose(rgba.color[0, 0] * 255, [10, 20, 30], atol=1e-4)
    np.testing.assert_allclose(bgra.color[0, 0] * 255, [30, 20, 10], atol=1e-4)
    assert rgba.alpha is not None and bgra.alpha is not None
    assert rgba.alpha[0, 0] * 255 == pytest.approx(40) and bgra.alpha[0, 0] * 255 == pytest.approx(40)
    gray = decode_image(ImageSpec(1, 1, "u16", "GRAY"), np.array([65535], "<u2").tobytes())
    np.testing.assert_array_equal(gray.color, np.ones((1, 1, 3), np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ORDERS)
def test_strided_frames_decode(dtype: str, order: str) -> None:
    h, w = 7, 11
    packed_spec = ImageSpec(w, h, dtype, order, "srgb", 0)
    arr = _random_frame(dtype, packed_spec.channels, h, w, seed=3)
    row = packed_spec.row_bytes
    extra = 13 * packed_spec.itemsize  # stride > row bytes, padding filled with junk
    stride = row + extra
    junk = np.full((h, extra), 0xEE, np.uint8)
    frame = np.concatenate([arr.view(np.uint8).reshape(h, row), junk], axis=1).tobytes()
    spec = ImageSpec.from_header({"width": w, "height": h, "dtype": dtype, "order": order, "stride": stride})
    assert spec.row_stride == stride and spec.nbytes == len(frame)
    np.testing.assert_array_equal(frame_to_array(spec, frame), arr)
    strided = decode_image(spec, frame)
    packed = decode_image(packed_spec, arr.tobytes())
    np.testing.assert_array_equal(strided.color, packed.color)
    if packed.alpha is not None:
        np.testing.assert_array_equal(strided.alpha, packed.alpha)
    out_spec, out = encode_image(strided, spec)  # the result is tightly packed
    assert out_spec.stride == 0 and out_spec.row_stride == row
    assert len(out) == row * h
    if dtype in ("u8", "u16"):
        assert out == arr.tobytes()


# --------------------------------------------------------------------------------------------------------------------
# conditioned models (an extra input channel: the denoiser's noise level, the sharpener's blur hint)


def test_builtin_restorers_declare_their_condition(engine: Engine) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETOUCH_MODELS_DIR", "/nonexistent")
        denoise = engine.get(registry.resolve("retouch-denoise"))
        sharpen = engine.get(registry.resolve("retouch-sharpen"))
    assert (denoise.architecture, denoise.condition) == ("DRUNet", "noise_sigma")
    assert (sharpen.architecture, sharpen.condition) == ("DRUNet", "blur_hint")
    for model in (denoise, sharpen):  # the extra channel is the engine's business: RGB in, RGB out
        assert (model.scale, model.input_channels, model.output_channels) == (1, 3, 3)


def test_condition_reaches_the_model_and_tiles_agree(engine: Engine) -> None:
    """Different noise levels give different outputs; the tiled path equals the untiled one for each (the channel is
    filled per tile, with the same value)."""
    model = engine.get(registry.resolve("retouch-denoise"))
    rng = np.random.default_rng(0)
    img = np.clip(gradient(150, 190) + rng.normal(0, 0.08, (150, 190, 3)), 0, 1).astype(np.float32)
    low, _ = engine.run(model, img, tile=512, condition=2 / 255)
    high, _ = engine.run(model, img, tile=512, condition=40 / 255)
    assert low.shape == high.shape == img.shape
    assert np.abs(low - high).mean() > 0.005
    tiled, info = engine.run(model, img, tile=128, condition=40 / 255)
    assert info.tiles > 1
    diff = np.abs(tiled - high)
    assert diff.mean() < 0.5 / 255 and np.percentile(diff, 99) < 3 / 255, (diff.mean() * 255, diff.max() * 255)


def test_conditioned_compact_from_a_spec(tmp_path: Path) -> None:
    """A Compact with 4 channels in and out serves as an RGB model plus a condition when its spec says so, and as a
    4-channel model when it does not."""
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    net = Compact(num_in_ch=4, num_out_ch=4, num_feat=8, num_conv=2, upscale=1)
    path = tmp_path / "hinted.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    plain = loader.load_model(path, torch.device("cpu"))
    assert (plain.input_channels, plain.output_channels, plain.condition) == (4, 4, None)
    hinted = loader.load_model(path, torch.device("cpu"), condition="blur_hint")
    assert (hinted.input_channels, hinted.output_channels, hinted.condition) == (3, 3, "blur_hint")
    img = gradient(40, 56)
    a, b = hinted(img, 0.0), hinted(img, 0.5)
    assert a.shape == b.shape == img.shape
    assert not np.allclose(a, b)
    assert np.array_equal(hinted(img), a)  # no condition given: the neutral 0


def test_self_ensemble_of_a_symmetric_model_is_the_model(engine: Engine) -> None:
    """Nearest-neighbour x2 commutes with flips and turns, so its 8-way ensemble equals one pass; a real model's
    ensemble differs from one pass but stays close (a mean of eight good answers)."""
    from retouch.engine import _self_ensemble

    img = gradient(40, 56)
    np.testing.assert_allclose(_self_ensemble(nearest2)(img), nearest2(img), atol=1e-6)
    model = engine.get(registry.resolve("retouch-upscale-x2"))
    rng = np.random.default_rng(1)
    noisy = np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1).astype(np.float32)
    one, _ = engine.run(model, noisy)
    eight, _ = engine.run(model, noisy, ensemble=True)
    assert eight.shape == one.shape
    assert 0 < np.abs(eight - one).mean() < 0.02
