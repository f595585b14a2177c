"""Exporting small models to ONNX for the tests that load .onnx files."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def save_onnx(net: torch.nn.Module, path: Path) -> None:
    """A small image model as .onnx with dynamic height and width."""
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and says so
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (torch.rand(1, 3, 16, 16),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "H", 3: "W"}},
            dynamo=False,
        )
