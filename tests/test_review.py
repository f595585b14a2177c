"""The invention map: informative (beats a plain edge map at predicting the true error), and delivered through the
daemon, the client and `retouch enhance --review`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from retouch.client import Client
from retouch.engine import Engine
from retouch.jobs import process_frame
from retouch.ops.review import edge_map
from retouch.pixels import spec_for_array
from retouch.protocol import ImageSpec
from retouch.tasks import get_task

HELD_OUT = sorted((Path(__file__).parent / "data" / "heldout").glob("*.png"))[::4]  # 8 crops, 2 per photo
SAMPLE = Path(__file__).parent.parent / "daemon" / "retouch" / "samples" / "boats.png"


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.slow
def test_invention_map_predicts_the_error_better_than_an_edge_map() -> None:
    engine = Engine(device="cpu")
    params = get_task("upscale").parse_params({"scale": 2, "review": True})
    ours, edges = [], []
    for path in HELD_OUT:
        truth = np.asarray(Image.open(path).convert("RGB"))
        small = cv2.resize(truth, (truth.shape[1] // 2, truth.shape[0] // 2), interpolation=cv2.INTER_AREA)
        spec = spec_for_array(small)
        out_spec, out, _, review = process_frame(engine, "upscale", spec, small.tobytes(), params)
        result = np.frombuffer(out, np.uint8).reshape(out_spec.height, out_spec.width, 3).astype(np.float32)
        error = cv2.GaussianBlur(np.abs(result - truth).mean(axis=2), (0, 0), 1.5)
        inv = np.frombuffer(review, np.uint8).reshape(out_spec.height, out_spec.width).astype(np.float32)
        bicubic = cv2.resize(small, (truth.shape[1], truth.shape[0]), interpolation=cv2.INTER_CUBIC)
        ours.append(correlation(inv, error))
        edges.append(correlation(edge_map(bicubic.astype(np.float32) / 255), error))
    print(f"invention map r={np.mean(ours):.3f}, edge map r={np.mean(edges):.3f}, per crop "
          f"{np.round(ours, 2)} vs {np.round(edges, 2)}")
    assert np.mean(ours) > np.mean(edges) + 0.05
    assert sum(o > e for o, e in zip(ours, edges, strict=True)) >= 6


def test_review_through_the_daemon(client: Client) -> None:
    img = np.asarray(Image.open(SAMPLE).convert("RGB"))[:64, :80]
    spec = ImageSpec(80, 64, "u8", "RGB")
    plain = client.enhance("denoise", img.tobytes(), spec, params={"noise_level": 10})
    assert plain.review is None and "review" not in plain.info
    reviewed = client.enhance("denoise", img.tobytes(), spec, params={"noise_level": 10, "review": True})
    assert reviewed.pixels == plain.pixels, "asking for the map changed the result"
    assert reviewed.info["review"] == {"width": 80, "height": 64} and len(reviewed.review) == 80 * 64
    up = client.enhance("upscale", img.tobytes(), spec, params={"scale": 2, "review": True})
    assert len(up.review) == 160 * 128


def test_cli_review(tmp_path: Path, client: Client) -> None:
    out, review = tmp_path / "o.png", tmp_path / "review.png"
    proc = subprocess.run([sys.executable, "-m", "retouch", "enhance", str(SAMPLE), "-o", str(out), "--scale", "2",
                           "--review", str(review), "-q"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    r = np.asarray(Image.open(review))
    assert r.ndim == 2 and r.shape == np.asarray(Image.open(out)).shape[:2] and r.max() > 100
    proc = subprocess.run([sys.executable, "-m", "retouch", "enhance", str(SAMPLE), "-o", str(tmp_path / "t.png"),
                           "--task", "tone", "--review", str(review)], capture_output=True, text=True, check=False)
    assert proc.returncode != 0 and "review" in proc.stderr
