"""Model loading: spandrel for PyTorch files (.pth, .pt, .ckpt, .safetensors), onnxruntime for .onnx.

Both backends are wrapped in `LoadedModel`, which maps one H x W x 3 float32 tile to its output tile, so the
tiling and task code never special-cases a backend.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UnsupportedModel
from .device import describe, pick_dtype

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".safetensors")
ONNX_SUFFIXES = (".onnx",)
MODEL_SUFFIXES = TORCH_SUFFIXES + ONNX_SUFFIXES
# face models whose spandrel call takes and returns [-1, 1] (RestoreFormer's call converts by itself)
SIGNED_ARCHITECTURES = ("GFPGAN", "CodeFormer")
# models whose code `.view`s feature maps: they need the standard (contiguous) layout, not channels-last
PLAIN_LAYOUT_ARCHITECTURES = ("GFPGAN", "CodeFormer")


@dataclass
class LoadedModel:
    path: Path
    backend: str  # "torch" | "onnx"
    architecture: str
    scale: int
    input_channels: int
    output_channels: int
    purpose: str
    device: torch.device
    dtype: str
    size_multiple: int = 1
    condition: str | None = None  # what its one extra input channel carries; None: a plain image model
    signed: bool = False  # takes and gives values in [-1, 1] (spandrel passes GFPGAN's and CodeFormer's range on)
    channels_last: bool = True  # feeds tensors in channels-last order (False: models that cannot take it)
    _descriptor: object = field(default=None, repr=False)
    _session: object = field(default=None, repr=False)
    _onnx_input: str = ""

    @property
    def context(self) -> int:
        """Pixels of context each tile is read with: a U-Net sees far (its receptive field spans 100+ px), a
        Compact or RRDB net a few dozen."""
        return 64 if self.architecture in ("DRUNet", "SCUNet", "NAFNet", "Restormer", "Uformer", "KBNet") else 8

    @property
    def conditioned(self) -> bool:
        return self.condition is not None

    @property
    def device_name(self) -> str:
        return describe(self.device) if self.backend == "torch" else f"onnx:{self.device.type}"

    def __call__(self, tile: np.ndarray, condition: float | None = None) -> np.ndarray:
        """H x W x 3 float32 [0, 1] -> (H*scale) x (W*scale) x C float32 [0, 1].

        `condition` fills the extra input channel of a conditioned model (ignored by the others). An inpainter's
        tile carries its mask as a 4th channel; a tile with nothing to fill is returned as it is, unrun."""
        if self.purpose == "Inpainting" and tile.shape[2] == 4 and not tile[:, :, 3].any():
            return np.ascontiguousarray(tile[:, :, :3])
        if self.backend == "onnx":
            return self._run_onnx(tile)
        return self._run_torch(tile, condition)

    def _run_torch(self, tile: np.ndarray, condition: float | None) -> np.ndarray:
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[self.dtype]
        x = torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1)))[None]
        x = x.clamp(0, 1).to(self.device, dtype)
        plane = None
        if x.shape[1] == self.input_channels + 1:  # a per-pixel conditioning plane (a mask) rides as the last channel
            x, plane = x[:, :-1], x[:, -1:]
        if self.conditioned and condition is None and self.condition != "noise_sigma":
            condition = 0.0  # a blur-hint channel's neutral value ("auto"); a denoiser keeps spandrel's default level
        with torch.inference_mode():
            if self.purpose == "Inpainting" and not self.conditioned:  # LaMa-class: image and mask apart
                y = self._run_masked(x, plane)
            elif self.conditioned and (condition is not None or plane is not None):
                y = self._run_conditioned(x, plane if plane is not None else condition)
            else:
                layout = torch.channels_last if self.channels_last else torch.contiguous_format
                if self.signed:  # [-1, 1] in and out
                    y = self._descriptor(x.mul(2).sub(1).contiguous(memory_format=layout)).add(1).div(2)  # type: ignore[operator]
                else:
                    y = self._descriptor(x.contiguous(memory_format=layout))  # type: ignore[operator]
        return y[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()

    def _run_conditioned(self, x: torch.Tensor, condition: float | torch.Tensor | None) -> torch.Tensor:
        """The image plus its conditioning channel: a constant (spandrel's own DRUNet call would fix it at 15/255)
        or a per-pixel plane. Pads like spandrel; extra output channels (a 4-in/4-out Compact's) are dropped."""
        h, w = x.shape[2:]
        m = self.size_multiple
        pads = (0, (-w) % m, 0, (-h) % m)
        x = torch.nn.functional.pad(x, pads, mode="replicate")
        if isinstance(condition, torch.Tensor):
            cond = torch.nn.functional.pad(condition, pads, mode="replicate")
        else:
            cond = torch.full((1, 1, *x.shape[2:]), float(condition or 0.0), dtype=x.dtype, device=x.device)
        x = torch.cat([x, cond], 1).contiguous(memory_format=torch.channels_last)
        y = self._descriptor.model(x)  # type: ignore[union-attr]
        return y[:, : self.output_channels, : h * self.scale, : w * self.scale]

    def _run_masked(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """An inpainting model of spandrel's (LaMa): image and mask (1 = fill) as two inputs; spandrel pads."""
        if mask is None:
            raise UnsupportedModel(f"model {self.path.name} is an inpainting model: it needs a mask to fill")
        return self._descriptor(x, (mask > 0.5).to(x.dtype))  # type: ignore[operator]

    def _run_onnx(self, tile: np.ndarray) -> np.ndarray:
        h, w = tile.shape[:2]
        m = self.size_multiple
        ph, pw = (-h) % m, (-w) % m
        x = np.ascontiguousarray(np.clip(tile, 0, 1).transpose(2, 0, 1))[None]
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect")
        y = self._session.run(None, {self._onnx_input: x.astype(np.float32)})[0]  # type: ignore[union-attr]
        y = y[0, :, : h * self.scale, : w * self.scale]
        return np.clip(y, 0, 1).transpose(1, 2, 0).astype(np.float32)


def load_model(path: Path, device: torch.device, precision: str = "auto", condition: str | None = None) -> LoadedModel:
    """Load `path`; raises UnsupportedModel with the reason when the file cannot serve as an image model.

    `condition` names what the model's extra input channel carries, for models that have one beyond what spandrel
    knows (DRUNet's noise-level channel is known: spandrel already counts it out of `input_channels`)."""
    if not path.is_file():
        raise UnsupportedModel(f"model file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return _load_onnx(path, device)
    if suffix not in TORCH_SUFFIXES:
        raise UnsupportedModel(f"model file {path.name}: unknown format (expected one of {', '.join(MODEL_SUFFIXES)})")
    return _load_torch(path, device, precision, condition)


def read_descriptor(path: Path) -> object:
    """spandrel's descriptor of a PyTorch model file, on the CPU, without running code from the file.

    .safetensors hold tensors only; .pth/.pt/.ckpt are unpickled by torch with `weights_only=True`, which refuses
    anything but tensors and plain containers (a pickle that would run code is an error, not a model).
    """
    import spandrel

    loader = spandrel.ModelLoader(device=torch.device("cpu"))
    if path.suffix.lower() == ".safetensors":
        return loader.load_from_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message spans many lines; keep what names the cause
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()
                       and "error" not in line.lower() and "issue" not in line.lower()), "")
        raise ValueError("it is not plain weights: it holds objects or code that Retouch will not unpickle"
                         + (f" ({detail})" if detail else "")) from None
    return loader.load_from_state_dict(state)


def _channels_last(model: torch.nn.Module) -> None:
    """Every 2-D convolution's weights in channels-last order (what oneDNN and cuDNN run fastest). Module by module:
    `model.to(memory_format=...)` fails on models that also hold 5-D weights (GFPGAN's modulated convolutions)."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.to(memory_format=torch.channels_last)


def _load_torch(path: Path, device: torch.device, precision: str, condition: str | None) -> LoadedModel:
    import spandrel

    try:
        desc = read_descriptor(path)
    except spandrel.UnsupportedModelError:
        raise UnsupportedModel(f"model file {path.name}: spandrel does not recognise this architecture") from None
    except Exception as exc:  # corrupt files raise anything from pickle, zip or safetensors
        raise UnsupportedModel(f"model file {path.name} could not be read: {exc}") from None
    if not isinstance(desc, (spandrel.ImageModelDescriptor, spandrel.MaskedImageModelDescriptor)):
        raise UnsupportedModel(f"model file {path.name} is a {type(desc).__name__}, not an image-to-image model")
    # LaMa's Fourier convolutions: torch's FFT takes no bf16 (and fp16 only at power-of-two sizes): fp32
    reduced = not isinstance(desc, spandrel.MaskedImageModelDescriptor)
    dtype = pick_dtype(device, precision, desc.supports_half and reduced, desc.supports_bfloat16 and reduced)
    desc.to(device).eval()
    desc.to(dtype)
    channels_last = desc.architecture.id not in PLAIN_LAYOUT_ARCHITECTURES
    if channels_last and (device.type == "cpu" or dtype != torch.float32):
        _channels_last(desc.model)
    in_ch, out_ch = int(desc.input_channels), int(desc.output_channels)
    purpose = str(desc.purpose)
    if desc.architecture.id == "DRUNet":
        condition = condition or "noise_sigma"
        if condition == "mask":  # our inpainter: RGB + the mask to fill, as a DRUNet's conditioning plane
            purpose = "Inpainting"
    elif condition is not None:  # RGB + condition in, RGB + one ignored channel out
        in_ch, out_ch = in_ch - 1, min(out_ch, in_ch - 1)
    return LoadedModel(
        path=path,
        backend="torch",
        architecture=desc.architecture.name,
        scale=int(desc.scale),
        input_channels=in_ch,
        output_channels=out_ch,
        purpose=purpose,
        device=device,
        dtype={torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype],
        size_multiple=int(desc.size_requirements.multiple_of),
        condition=condition,
        signed=desc.architecture.id in SIGNED_ARCHITECTURES,
        channels_last=channels_last,
        _descriptor=desc,
    )


def _load_onnx(path: Path, device: torch.device) -> LoadedModel:
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        raise UnsupportedModel(f"model file {path.name} could not be loaded by onnxruntime: {exc}") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise UnsupportedModel(f"model file {path.name}: expected one NCHW image input, found {len(inputs)} inputs")
    in_ch = inputs[0].shape[1] if isinstance(inputs[0].shape[1], int) else 3
    probe = np.zeros((1, in_ch, 16, 16), np.float32)
    try:
        out = session.run(None, {inputs[0].name: probe})[0]
    except Exception as exc:
        raise UnsupportedModel(
            f"model file {path.name}: a 16x16 probe failed ({exc}); only models with dynamic sizes work"
        ) from None
    if out.ndim != 4 or out.shape[2] % 16 or out.shape[2] != out.shape[3]:
        raise UnsupportedModel(f"model file {path.name}: output shape {out.shape} is not an image of the input")
    scale = out.shape[2] // 16
    on_gpu = session.get_providers()[0] == "CUDAExecutionProvider"
    return LoadedModel(
        path=path,
        backend="onnx",
        architecture="ONNX",
        scale=scale,
        input_channels=int(in_ch),
        output_channels=int(out.shape[1]),
        purpose="SR" if scale > 1 else "Restoration",
        device=torch.device("cuda" if on_gpu else "cpu"),
        dtype="fp32",
        _session=session,
        _onnx_input=inputs[0].name,
    )
