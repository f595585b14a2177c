"""The restore task end to end through a real daemon on loopback, and its command line.

The pictures are crops of the held-out photos (tests/data/heldout/, never seen by a training script) damaged by
training/damage.py with a fixed seed: scratches, dust, hairs, blotches and water-stain rings on colour, grayscale and
sepia photos, with the true damage mask known. The quality floors are the issue's bars: detection IoU >= 0.6, the
repaired photo >= +6 dB over the damaged one and better than OpenCV Telea given the same detected mask.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from retouch.client import Client
from retouch.engine import Engine
from retouch.engine.registry import resolve
from retouch.imageio import read_image, write_image
from retouch.ops.inpaint import feather, grow, telea
from test_tasks import crop_u8, expect_bad_request, ok, one_json, retouch, review, run, to_float, to_u8

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))
from damage import damaged_set  # noqa: E402

CROPS = ("dune-0.png", "eveningglow-2.png", "ladybird-3.png", "path-5.png", "ladybird-6.png", "eveningglow-7.png")


@functools.cache
def cases() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(damaged u8, undamaged float, true damage mask) per crop, seed 11."""
    photos = [to_float(crop_u8(name, 256)) for name in CROPS]
    return [(to_u8(d), b, m) for d, b, m in damaged_set(photos, seed=11)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    x = a.astype(np.float64) / 255 if a.dtype == np.uint8 else a.astype(np.float64)
    return float(10 * np.log10(1.0 / max(np.mean((x - b) ** 2), 1e-12)))


def mask_frame(mask: np.ndarray) -> bytes:
    return np.ascontiguousarray(np.where(mask, 255, 0).astype(np.uint8)).tobytes()


# ---- in process: the mask operations, the classical fill, the inpainter's mask plane through the engine ----------
def test_grow_and_feather() -> None:
    dot = np.zeros((21, 21), bool)
    dot[10, 10] = True
    grown = grow(dot, 2)
    assert grown.sum() == 17 and grown[10, 8] and grown[8, 10] and not grown[8, 8]  # OpenCV's 5 x 5 disc
    soft = feather(grown)
    assert (soft[grown] == 1.0).all() and soft[10, 15] == 0.0 and 0.0 < soft[10, 13] < 1.0


def test_telea_fills_a_line_from_its_surroundings() -> None:
    yy, xx = np.mgrid[0:64, 0:64].astype(np.float32)
    smooth = np.dstack([xx / 63, yy / 63, 0.5 * np.ones_like(xx)]).astype(np.float32)
    hole = np.zeros((64, 64), bool)
    hole[30:33, 5:60] = True
    damaged = smooth.copy()
    damaged[hole] = 1.0
    filled = telea(damaged, hole)
    assert np.array_equal(filled[~hole], damaged[~hole])
    assert np.abs(filled[hole] - smooth[hole]).max() < 0.05


def test_the_inpainters_mask_plane_is_tiled_with_the_image() -> None:
    engine = Engine(device="cpu", precision="fp32")
    model = engine.get(resolve("retouch-inpaint"))
    assert (model.purpose, model.condition, model.input_channels, model.output_channels) == (
        "Inpainting", "mask", 3, 3)
    damaged, _, truth = cases()[0]
    stacked = np.dstack([to_float(damaged), grow(truth, 2).astype(np.float32)])
    whole, _ = engine.run(model, stacked, tile=512)
    tiled, info = engine.run(model, stacked, tile=128)
    assert info.tiles > 1 and np.abs(whole - tiled).max() < 0.02
    without_mask, _ = engine.run(model, np.dstack([to_float(damaged), np.zeros((256, 256, 1), np.float32)]))
    assert np.abs(whole - without_mask)[grow(truth, 2)].mean() > 0.01  # the plane reaches the model


# ---- quality -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_detection_finds_the_damage(client: Client) -> None:
    inter = union = 0
    for damaged, _, truth in cases():
        _, result = run(client, "restore", damaged, params={"grow": 0, "review": True})
        found = review(result) == 255
        inter += int((found & truth).sum())
        union += int((found | truth).sum())
        assert result.info["detector"]["model"] == "retouch-damage"
    assert inter / union >= 0.6, f"pooled IoU {inter / union:.3f}"


@pytest.mark.slow
def test_ensemble_detection_averages_eight_passes_and_finds_the_damage_as_well(client: Client) -> None:
    counts = {False: [0, 0], True: [0, 0]}  # ensemble -> [intersection, union]
    for damaged, _, truth in cases():
        masks = {}
        for ensemble in (False, True):
            _, result = run(client, "restore", damaged, params={"grow": 0, "review": True, "ensemble": ensemble})
            assert result.info["detector"]["ensemble"] is ensemble
            masks[ensemble] = found = review(result) == 255
            counts[ensemble][0] += int((found & truth).sum())
            counts[ensemble][1] += int((found | truth).sum())
    iou = {ensemble: inter / union for ensemble, (inter, union) in counts.items()}
    assert iou[True] >= 0.6 and iou[True] >= iou[False] - 0.02, iou
    assert not np.array_equal(masks[False], masks[True])  # the passes were averaged: the mask moved


@pytest.mark.slow
def test_repair_gains_6_db_and_beats_telea_on_the_same_mask(client: Client) -> None:
    gains, over_telea = [], []
    for damaged, base, _ in cases():
        ours, result = run(client, "restore", damaged)
        telea, t_result = run(client, "restore", damaged, params={"inpainter": "telea"})
        assert result.info["model"] == "retouch-inpaint" and t_result.info["inpainter"] == "telea"
        assert t_result.info["repaired_share"] == result.info["repaired_share"]  # the same detected mask
        gains.append(psnr(ours, base) - psnr(damaged, base))
        over_telea.append(psnr(ours, base) - psnr(telea, base))
    assert np.mean(gains) >= 6.0, gains
    assert np.mean(over_telea) > 0.0 and min(gains) > 2.0, (gains, over_telea)


def test_a_clean_photo_is_left_almost_alone(client: Client) -> None:
    clean = crop_u8("path-2.png", 256)
    out, result = run(client, "restore", clean, params={"review": True})
    assert result.info["damaged_share"] < 0.01, result.info
    changed = np.abs(out.astype(int) - clean.astype(int)).max(2) > 0
    assert changed.mean() < 0.03 and (review(result) > 0).mean() < 0.03


# ---- masks ---------------------------------------------------------------------------------------------------------
def square(size: int, y0: int, x0: int, side: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def test_hand_marked_damage_only_is_repaired_there(client: Client) -> None:
    damaged = cases()[0][0]
    marked = square(256, 100, 60, 20)
    out, result = run(client, "restore", damaged, mask=mask_frame(marked),
                      params={"detect": False, "mask_is": "damage", "grow": 2, "review": True})
    repaired = review(result) == 255
    grown = cv2.dilate(marked.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))).astype(bool)
    assert np.array_equal(repaired, grown)
    far = ~cv2.dilate(grown.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(out[far], damaged[far])  # the 1 px feather, no further: the rest is the input, exactly
    assert np.abs(out[marked].astype(int) - damaged[marked].astype(int)).mean() > 0.5
    assert "selection" not in result.info.get("post", {})  # the mask marked damage; it did not bound the job


def test_selection_bounds_detection_and_repair(client: Client) -> None:
    damaged, base, truth = cases()[5]
    left = np.zeros((256, 256), bool)
    left[:, :128] = True
    out, result = run(client, "restore", damaged, mask=mask_frame(left), params={"review": True})
    assert np.array_equal(out[:, 136:], damaged[:, 136:])
    assert not (review(result)[:, 136:] > 0).any()
    assert psnr(out[:, :120], base[:, :120]) > psnr(damaged[:, :120], base[:, :120]) + 0.5
    assert truth[:, :120].mean() > 0.005 and truth[:, 136:].mean() > 0.005  # damage on both sides


def test_restore_keeps_faces_at_full_strength_by_default(client: Client) -> None:
    task = next(t for t in client.tasks() if t["name"] == "restore")
    defaults = {p["name"]: p["default"] for p in task["params"]}
    assert defaults["face_strength"] == 1.0 and defaults["detect"] is True and defaults["inpainter"] == "model"
    upscale = next(t for t in client.tasks() if t["name"] == "upscale")
    assert {p["name"]: p["default"] for p in upscale["params"]}["face_strength"] == 0.5


# ---- models --------------------------------------------------------------------------------------------------------
def test_a_lama_class_model_loaded_by_spandrel_fills_the_mask(client: Client, tmp_path: Path) -> None:
    """Random weights of spandrel's LaMa architecture (the real big-lama is not downloadable here): the plumbing, not
    the quality: the job runs it with the mask, and only the masked pixels change."""
    import torch
    from safetensors.torch import save_file
    from spandrel.architectures.LaMa import LaMa

    torch.manual_seed(0)
    path = tmp_path / "lama-random.safetensors"
    save_file({k: v.half().contiguous() for k, v in LaMa(in_nc=4, out_nc=3).state_dict().items()}, str(path))
    damaged = np.ascontiguousarray(cases()[2][0][:64, :64])
    marked = square(64, 20, 20, 12)
    out, result = run(client, "restore", damaged, mask=mask_frame(marked), model=str(path),
                      params={"detect": False, "mask_is": "damage", "grow": 0})
    assert result.info["model"] == "lama-random" and result.info["inpainter"] == "model"
    far = ~cv2.dilate(marked.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(out[far], damaged[far])
    assert np.abs(out[marked].astype(int) - damaged[marked].astype(int)).max() > 0


def test_a_model_that_does_not_inpaint_is_refused(client: Client) -> None:
    expect_bad_request(client, "restore", "retouch-upscale-x2", "inpainting", model="retouch-upscale-x2")


# ---- bad requests --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("params", "words"), [
    ({"detect": False}, ("detect is off", "mask")),
    ({"sensitivity": 1.5}, ("sensitivity", "outside")),
    ({"grow": -1}, ("grow",)),
    ({"inpainter": "lama"}, ("inpainter", "telea")),
    ({"mask_is": "hole"}, ("mask_is", "damage")),
])
def test_bad_parameters_are_named(client: Client, params: dict[str, Any], words: tuple[str, ...]) -> None:
    expect_bad_request(client, "restore", *words, params=params)


def test_telea_takes_no_model(client: Client) -> None:
    expect_bad_request(client, "restore", "telea", "no model", params={"inpainter": "telea"}, model="retouch-inpaint")


# ---- command line --------------------------------------------------------------------------------------------------
def test_cli_restore_writes_the_result_and_the_mask(client: Client, tmp_path: Path) -> None:
    damaged = cases()[3][0]
    src, dst, saved = tmp_path / "old.png", tmp_path / "restored.png", tmp_path / "damage.png"
    write_image(src, damaged)
    summary = one_json(retouch("enhance", src, "-o", dst, "--task", "restore", "--save-mask", saved, "--json"))
    assert summary["task"] == "restore" and summary["save_mask"] == str(saved)
    mask = read_image(saved).pixels
    assert mask.shape[:2] == (256, 256) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert 0.002 < (mask == 255).mean() < 0.3
    out = read_image(dst).pixels
    outside = ~cv2.dilate((mask == 255).astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    assert np.array_equal(out[outside], damaged[outside])


def test_cli_mask_marks_damage_by_hand(client: Client, tmp_path: Path) -> None:
    damaged = cases()[4][0]
    src, dst, mask_path = tmp_path / "old.png", tmp_path / "out.png", tmp_path / "marked.png"
    write_image(src, damaged)
    write_image(mask_path, np.where(square(256, 30, 30, 16), 255, 0).astype(np.uint8))
    summary = one_json(retouch("enhance", src, "-o", dst, "--task", "restore", "--mask", mask_path,
                               "--no-detect", "--mask-is", "damage", "--json"))
    assert summary["params"]["detect"] is False
    out = read_image(dst).pixels
    assert not np.array_equal(out[30:46, 30:46], damaged[30:46, 30:46])
    assert np.array_equal(out[60:], damaged[60:])


@pytest.mark.parametrize(("mask", "words"), [
    (np.zeros((256, 256, 3), np.uint8), ("grayscale", "RGB")),
    (np.zeros((100, 256), np.uint8), ("256x100", "256x256", "same size")),
])
def test_cli_bad_mask_is_refused_with_the_reason(client: Client, tmp_path: Path, mask: np.ndarray,
                                                 words: tuple[str, ...]) -> None:
    src, dst, mask_path = tmp_path / "old.png", tmp_path / "out.png", tmp_path / "bad-mask.png"
    write_image(src, cases()[0][0])
    write_image(mask_path, mask)
    proc = retouch("enhance", src, "-o", dst, "--task", "restore", "--mask", mask_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert not dst.exists()


def test_cli_save_mask_belongs_to_restore(client: Client, tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    write_image(src, crop_u8("dune-1.png", 32))
    proc = retouch("enhance", src, "-o", tmp_path / "b.png", "--task", "denoise", "--save-mask", tmp_path / "m.png")
    assert proc.returncode == 1 and "--save-mask" in proc.stderr and "--review" in proc.stderr


def test_cli_tasks_lists_restore(client: Client) -> None:
    tasks = json.loads(ok(retouch("tasks", "--json")).stdout)
    restore = next(t for t in (tasks["tasks"] if isinstance(tasks, dict) else tasks) if t["name"] == "restore")
    assert {"detect", "sensitivity", "grow", "inpainter", "mask_is", "review"} <= {p["name"] for p in restore["params"]}
