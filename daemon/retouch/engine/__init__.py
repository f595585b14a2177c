"""The model host: a warm cache of loaded models, tiled inference, out-of-memory fallback.

One `Engine` lives in the daemon's worker thread and owns every model; models stay loaded between jobs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .device import describe, pick_device
from .loader import LoadedModel, load_model
from .registry import ModelSpec
from .tiling import count_tiles, run_tiled

log = logging.getLogger("retouch.engine")

MIN_TILE = 32
MAX_TILE = 2048
DEFAULT_CPU_BUDGET = 1 << 30  # bytes of activations for one tile on CPU
DEFAULT_VRAM_BUDGET = 8 << 30  # bytes of GPU memory a job may hold at its peak, weights included
VRAM_PROBE = 128  # side of the tile whose measured peak gives a model's GPU bytes per pixel
VRAM_MARGIN = 1.2  # cuDNN picks other algorithms (and workspaces) for larger tiles
BYTES_PER_PIXEL_FP32 = 2048  # per input pixel, for a small conv net at 48-64 features (measured order)


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return "out of memory" in text or "failed to allocate" in text


@dataclass
class RunInfo:
    model: str
    device: str
    dtype: str
    tile: int
    tiles: int
    retries: int


class Engine:
    def __init__(self, device: str = "auto", precision: str = "auto", max_loaded: int = 4,
                 vram_budget: int = DEFAULT_VRAM_BUDGET) -> None:
        self.device = pick_device(device)
        self.precision = precision
        self.max_loaded = max_loaded
        self.vram_budget = vram_budget
        self._gpu_bytes_per_px: dict[tuple[str, str], float] = {}
        self._cache: OrderedDict[tuple[str, str], LoadedModel] = OrderedDict()
        self._lock = threading.Lock()  # held while loading: one load of a file at a time
        self._cache_lock = threading.Lock()  # held briefly around every cache read or change
        self.loads = 0  # how many times a model file was actually loaded (tests check the cache with it)
        # Fault injection for the reliability tests: tiles larger than this many pixels fail as out-of-memory.
        self.fault_oom_above = int(os.environ.get("RETOUCH_FAULT_OOM_TILE", "0") or 0)

    @property
    def device_name(self) -> str:
        return describe(self.device)

    def loaded(self) -> list[str]:
        with self._cache_lock:
            return [str(k[0]) for k in self._cache]

    def get(self, spec: ModelSpec, device: torch.device | None = None) -> LoadedModel:
        """The loaded model for `spec`, loading it once and keeping it hot (LRU over `max_loaded`)."""
        device = device or self.device
        key = (str(spec.path), str(device))
        with self._lock:
            with self._cache_lock:
                model = self._cache.get(key)
            if model is None:
                log.info("loading %s on %s", spec.path.name, device)
                model = load_model(spec.path, device, self.precision, spec.condition)
                self.loads += 1
            with self._cache_lock:
                self._cache[key] = model
                self._cache.move_to_end(key)
                while len(self._cache) > self.max_loaded:
                    self._cache.popitem(last=False)
            return model

    def default_tile(self, model: LoadedModel) -> int:
        """The largest tile whose activations fit: on CPU an estimate per pixel against a fixed budget; on a GPU
        the model's measured peak per pixel against what is left of `vram_budget` (and of the card's free
        memory) once the loaded weights are counted, so a job's peak stays under the budget."""
        if model.device.type == "cuda" and model.backend == "torch":
            used = torch.cuda.memory_allocated(model.device)
            free, _ = torch.cuda.mem_get_info(model.device)
            budget = max(0, min(self.vram_budget - used, int(free * 0.9)))
            per_px = self.gpu_bytes_per_pixel(model) * VRAM_MARGIN
            side = int((budget / per_px) ** 0.5) - 2 * model.context
            return max(MIN_TILE, min(MAX_TILE, side // 32 * 32))
        per_px = BYTES_PER_PIXEL_FP32 * (1 if model.dtype == "fp32" else 0.5) * max(1, model.scale**2 / 4)
        tile = int((DEFAULT_CPU_BUDGET / per_px) ** 0.5) // 32 * 32
        return max(MIN_TILE * 4, min(MAX_TILE, tile))

    def gpu_bytes_per_pixel(self, model: LoadedModel) -> float:
        """GPU memory one input pixel costs this model at its peak, measured once on a probe tile (activations
        grow with the pixel count, so the probe's figure scales)."""
        key = (str(model.path), str(model.device))
        if key not in self._gpu_bytes_per_px:
            dev = model.device
            planes = model.input_channels + (model.purpose == "Inpainting")  # an inpainter's mask rides along
            probe = np.zeros((VRAM_PROBE, VRAM_PROBE, planes), np.float32)
            torch.cuda.synchronize(dev)
            before = torch.cuda.memory_allocated(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            model(probe, 0.0 if model.conditioned else None)
            torch.cuda.synchronize(dev)
            peak = torch.cuda.max_memory_allocated(dev) - before
            self._gpu_bytes_per_px[key] = max(peak, 1) / VRAM_PROBE**2
        return self._gpu_bytes_per_px[key]

    def run(
        self,
        model: LoadedModel,
        image: np.ndarray,
        tile: int | None = None,
        on_tile: Callable[[int, int], None] | None = None,
        overlap: int = 32,
        condition: float | None = None,
        ensemble: bool = False,
    ) -> tuple[np.ndarray, RunInfo]:
        """Run `model` over an H x W x 3 float32 image, tiled; halve the tile on out-of-memory, then fall back to
        CPU. Cancellation and progress come through `on_tile`, which may raise. `condition` feeds the extra input
        channel of conditioned models (the noise level of a DRUNet denoiser). `ensemble` averages the model over the
        eight flips and quarter turns of each tile (8x the time; cleaner, the classic self-ensemble)."""
        tile = tile or self.default_tile(model)
        retries = 0
        while True:
            fn = _with_condition(model, condition)
            if ensemble:
                fn = _self_ensemble(fn)
            if self.fault_oom_above:
                fn = _failing_above(fn, self.fault_oom_above)
            try:
                out = run_tiled(image, fn, model.scale, tile, overlap=overlap, pad=model.context, on_tile=on_tile)
                tiles = _tile_count(image, tile, overlap)
                return out, RunInfo(model.path.stem, model.device_name, model.dtype, tile, tiles, retries)
            except Exception as exc:
                if not is_oom(exc):
                    raise
                retries += 1
                if model.device.type == "cuda":
                    torch.cuda.empty_cache()
                if tile // 2 >= MIN_TILE:
                    log.warning("out of memory at tile %d, retrying at %d", tile, tile // 2)
                    tile //= 2
                    continue
                if model.device.type == "cuda":
                    log.warning("out of memory on the GPU at the smallest tile, falling back to CPU")
                    # a CPU copy of its own: the cached GPU model stays on the GPU for later jobs
                    spec = ModelSpec(model.path.stem, model.path, False, condition=model.condition)
                    model = self.get(spec, torch.device("cpu"))
                    tile = self.default_tile(model)
                    continue
                raise


def _tile_count(image: np.ndarray, tile: int, overlap: int) -> int:
    return count_tiles(image.shape[0], image.shape[1], tile, min(overlap, tile // 2))


def _with_condition(model: LoadedModel, condition: float | None) -> Callable[[np.ndarray], np.ndarray]:
    return model if condition is None else lambda tile: model(tile, condition)


def _self_ensemble(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """The mean of fn over the 8 symmetries of the square (each output turned back)."""

    def run(tile: np.ndarray) -> np.ndarray:
        acc = None
        for flip in (False, True):
            base = tile[:, ::-1] if flip else tile
            for k in range(4):
                out = np.rot90(fn(np.ascontiguousarray(np.rot90(base, k))), -k)
                out = out[:, ::-1] if flip else out
                acc = out.astype(np.float32) if acc is None else acc + out
        assert acc is not None
        return acc / 8

    return run


def _failing_above(fn: Callable[[np.ndarray], np.ndarray], limit: int) -> Callable[[np.ndarray], np.ndarray]:
    def run(tile: np.ndarray) -> np.ndarray:
        if max(tile.shape[:2]) > limit:
            raise torch.OutOfMemoryError(f"injected fault: tile {tile.shape[1]}x{tile.shape[0]} over {limit} px")
        return fn(tile)

    return run


__all__ = ["DEFAULT_VRAM_BUDGET", "MAX_TILE", "VRAM_MARGIN", "Engine", "LoadedModel", "ModelSpec", "RunInfo", "is_oom"]
