"""`--blur motion`: the camera shake estimated from the picture (retouch/ops/shake.py), its deconvolution mixed into
the blind sharpener's result as far as the gate predicts a gain. Real parts: the daemon's sharpener, the builtin
refiner and denoiser, crops of the held-out photos shaken by the training generator's shakes and by the tests'
S-shaped one. The quality figures are in tests/test_quality_restore.py and benchmarks/quality.py."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from retouch.client import Client
from retouch.ops import shake
from retouch.ops.noise import estimate_sigma
from retouch.pixels import frame_to_array, spec_for_array
from shaken_pictures import shake as s_shaped_shake
from shaken_pictures import to_u8

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
from degradations import blur, motion_kernel  # noqa: E402
from train_shake_kernel import fit_gate, gate_rules, varied_shake  # noqa: E402

HELD_OUT = Path(__file__).parent / "data" / "heldout"


def crop(name: str, size: int = 128) -> np.ndarray:
    return np.asarray(Image.open(HELD_OUT / name).convert("RGB"))[:size, :size].astype(np.float32) / 255


def shaken(clean: np.ndarray, kernel: np.ndarray, seed: int) -> np.ndarray:
    """`clean` blurred by `kernel`, plus sensor noise sigma 2 of 255, as 8-bit (what an editor sends)."""
    out = blur(torch.from_numpy(clean).permute(2, 0, 1)[None], kernel)[0].permute(1, 2, 0).numpy()
    return to_u8(out + np.random.default_rng(seed).normal(0, 2 / 255, out.shape))


def sharpen(client: Client, u8: np.ndarray, **params: Any) -> tuple[np.ndarray, dict[str, Any]]:
    result = client.enhance("sharpen", np.ascontiguousarray(u8).tobytes(), spec_for_array(u8), params=params)
    return frame_to_array(result.spec, result.pixels), result.info


def test_the_refiner_brings_the_kernel_nearer_the_true_shake(client: Client) -> None:
    """Its input, the least-squares kernel against the sharpener's output, is short and patchy; its output must be
    nearer the truth on every crop (measured: L1 0.42-0.76 against 1.03-1.82, out of 2)."""
    rng = random.Random(3)
    for i, name in enumerate(("ladybird-1.png", "path-0.png", "dune-1.png", "eveningglow-4.png")):
        truth = motion_kernel(11, rng)
        blurred = shaken(crop(name), truth, seed=i)
        sharpened, _ = sharpen(client, blurred)
        estimate = shake.estimate_shake(blurred / 255, sharpened / 255)
        kernel, rough = estimate.kernel, estimate.rough
        assert kernel.shape == (21, 21) and abs(kernel.sum() - 1) < 1e-9 and kernel.min() >= 0
        refined, start = shake.kernel_error(kernel, truth), shake.kernel_error(rough, truth)
        print(f"{name}: kernel L1 error, refined {refined:.2f}, least squares {start:.2f}")
        assert refined < start - 0.1 and refined < 1.0, f"{name}: refined {refined:.2f}, least squares {start:.2f}"


def test_the_refined_kernel_turns_and_flips_with_the_picture() -> None:
    """The refiner's answer is the mean over the eight turns and flips of its input, so turning or mirroring the
    input must turn or mirror the kernel exactly, and leave the answers' spread as it is (a wrong inverse turn
    breaks both)."""
    blurred = shaken(crop("path-0.png"), motion_kernel(11, random.Random(2)), seed=2) / np.float32(255)
    rough = shake.centred(varied_shake(9, random.Random(4)), shake.KERNEL_SIZE)  # a bent shake: no symmetry
    inputs = shake.refiner_input(blurred, rough)
    kernel, spread = shake.refined(shake.refiner(), inputs)
    assert kernel.shape == (21, 21) and abs(kernel.sum() - 1) < 1e-9 and 0 < spread < 2
    for same in (np.rot90(kernel), np.rot90(kernel, 2), kernel[:, ::-1], kernel[::-1]):
        assert np.abs(same - kernel).sum() > 0.1, "a test kernel that turns into itself proves nothing"
    for turn in (np.rot90, lambda a, axes=(0, 1): np.rot90(a, 2, axes), lambda a, axes=(0, 1): np.flip(a, axes[1])):
        moved, moved_spread = shake.refined(shake.refiner(), np.ascontiguousarray(turn(inputs, axes=(1, 2))))
        assert np.allclose(moved, turn(kernel, axes=(0, 1)), atol=1e-5)
        assert moved_spread == pytest.approx(spread, abs=1e-5)


def test_the_gate_keeps_the_sharpener_where_the_deconvolution_goes_wild(client: Client) -> None:
    blurred_u8 = shaken(crop("ladybird-1.png"), motion_kernel(11, random.Random(5)), seed=5)
    sharpened_u8, _ = sharpen(client, blurred_u8)
    blurred, sharpened = blurred_u8 / np.float32(255), sharpened_u8 / np.float32(255)
    noise = estimate_sigma(blurred)
    wild = np.clip(blurred + np.random.default_rng(0).normal(0, 0.1, blurred.shape), 0, 1).astype(np.float32)
    for label, deconvolution in (("noise", wild), ("the blurred picture itself", blurred)):
        out, report = shake.mix_with_deconvolution(blurred, sharpened, noise, lambda kernel, d=deconvolution: d)
        assert report["share"] == 0.0 and report["predicted_gain_db"] == 0.0, (label, report)
        assert out is sharpened, label


def test_sharpen_motion_reports_the_shake_and_is_blind_where_the_gate_declines(client: Client) -> None:
    shares = set()
    for i, name in enumerate(("ladybird-1.png", "path-0.png", "eveningglow-4.png")):
        blurred = to_u8(s_shaped_shake(crop(name)) + np.random.default_rng(i).normal(0, 2 / 255, (128, 128, 3)))
        blind, _ = sharpen(client, blurred)
        out, info = sharpen(client, blurred, blur="motion")
        report = info["shake"]
        assert set(report) == {"kernel_extent", "share", "predicted_gain_db"}
        assert 5 <= report["kernel_extent"] <= 21 and report["share"] in (0.0, *shake.GATE)
        assert (report["share"] == 0.0) == (report["predicted_gain_db"] == 0.0)
        assert info["blur"] == "motion" and info["model"] == "retouch-sharpen"
        if report["share"] == 0.0:  # the blind sharpener's result, bit for bit
            assert np.array_equal(out, blind), name
        else:
            assert not np.array_equal(out, blind), name
        shares.add(report["share"])
    print(f"shares used: {sorted(shares)}")


def test_sharpen_motion_on_a_picture_too_small_to_estimate_uses_the_hint_alone(client: Client) -> None:
    small = shaken(crop("path-0.png", shake.MIN_SIDE - 1), motion_kernel(9, random.Random(1)), seed=1)
    out, info = sharpen(client, small, blur="motion")
    assert out.shape == small.shape and "shake" not in info and info["blur"] == "motion"


def test_fit_gate_recovers_a_linear_gain_and_picks_the_best_share() -> None:
    """train_shake_kernel.py's gate fit on rows whose gains are exact linear functions of their features."""
    rng = np.random.default_rng(0)
    truth = {0.25: np.array([0.5, -1.0, 0.2, 0, 0, 0, 0, 0.3, -0.2]),
             0.5: np.array([0.2, -2.5, 0.4, 0, 0, 0, 0, 0.8, -0.5]),
             0.75: np.array([-0.3, -3.5, 0.6, 0, 0, 0, 0, 1.2, -0.9])}
    rows = []
    for _ in range(400):
        features = np.concatenate([[1.0], rng.normal(0, 1, 8)])
        sharpened = float(rng.uniform(0, 3))
        rows.append({"features": features, "varied": False, "sharpened": sharpened,
                     "mixed": {share: sharpened + features @ coefficients for share, coefficients in truth.items()}})
    gate = fit_gate(rows)
    assert set(gate) == set(truth)
    for share in truth:
        assert np.allclose(gate[share], truth[share], atol=0.02), (share, gate[share])
    best = gate_rules(gate)["the gate's best share (shipped)"]
    for r in rows[:50]:
        wanted = max([r["sharpened"], *r["mixed"].values()])
        assert best(r) == pytest.approx(wanted, abs=0.05)
