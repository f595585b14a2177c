"""The face task end to end through a real daemon on loopback (and its command line), and the face alignment it
uses for face models (retouch.ops.facealign).

The portrait is scikit-image's astronaut (public domain), blurred and made noisy with a fixed seed; the face model is
a small RestoreFormer that spandrel loads, built here with random weights: it shows that a spandrel face model is
aligned, run and pasted back, not that it restores anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from daemon_process import start_daemon, stop_daemon
from retouch.client import Client
from retouch.ops.facealign import SIZE, TEMPLATE, align_face, align_matrix, crop_mask, paste_face, scale_of
from test_tasks import crop_u8, expect_bad_request, one_json, retouch, review, run, to_float, to_u8

FACE_BOX = (179, 59, 269, 175)  # MTCNN's box of the astronaut's face (tests/test_faces.py checks it)


def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut())


def degraded() -> np.ndarray:
    """The portrait blurred (Gaussian, sigma 1.5) with Gaussian noise (sigma 8 of 255), 8-bit."""
    blurred = cv2.GaussianBlur(to_float(astronaut()), (0, 0), 1.5)
    noise = np.random.default_rng(3).normal(0.0, 8 / 255, blurred.shape).astype(np.float32)
    return to_u8(blurred + noise)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((to_float(a) - to_float(b)) ** 2)))


@pytest.fixture(scope="module")
def face_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RestoreFormer (spandrel's FaceSR architecture) at a small width, random weights, as a .safetensors file."""
    from safetensors.torch import save_file
    from spandrel.architectures.RestoreFormer import RestoreFormer

    torch.manual_seed(0)
    net = RestoreFormer(n_embed=64, embed_dim=32, ch=32, ch_mult=(1, 1, 1, 1, 1, 2), num_res_blocks=1, z_channels=32)
    path = tmp_path_factory.mktemp("facemodel") / "tiny-restoreformer.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


# ---------------------------------------------------------------- through the daemon


def test_the_face_is_restored_and_nothing_else_changes(client: Client) -> None:
    src, clean = degraded(), astronaut()
    out, result = run(client, "face", src, params={"review": True})
    info = result.info
    assert info["model"] == "retouch-sharpen" and info["models"] == ["retouch-denoise", "retouch-sharpen"]
    assert 6 <= info["noise_level_estimated"] <= 10, info  # sigma 8 added
    (face,) = info["faces"]
    assert len(face["landmarks"]) == 5
    x0, y0, x1, y1 = face["box"]
    assert abs(x0 - FACE_BOX[0]) <= 6 and abs(y1 - FACE_BOX[3]) <= 6, face
    (flag,) = info["flags"]
    assert flag["kind"] == "face" and flag["box"] == face["box"] and flag["strength"] == 1.0
    assert flag["label"] == "face restored by retouch-sharpen"
    inner = np.s_[y0 + 10:y1 - 10, x0 + 10:x1 - 10]
    gain = psnr(out[inner], clean[inner]) - psnr(src[inner], clean[inner])
    assert gain >= 1.5, gain  # measured +2.3 dB
    weight = review(result)
    qw, qh = (x1 - x0) // 4, (y1 - y0) // 4
    assert weight[y0 + qh:y1 - qh, x0 + qw:x1 - qw].min() == 255  # the face's middle came from the restorer
    untouched = weight == 0
    assert np.array_equal(out[untouched], src[untouched])
    assert 0.03 < (weight > 0).mean() < 0.15  # the face and its feathered rim, not the picture


def test_a_picture_without_faces_comes_back_unchanged(client: Client) -> None:
    src = crop_u8("dune-1.png", 128)
    out, result = run(client, "face", src)
    assert np.array_equal(out, src)
    assert result.info["faces"] == [] and "no face found" in result.info["note"]
    assert "flags" not in result.info


def test_only_faces_inside_the_selection(client: Client) -> None:
    src = degraded()
    away = np.zeros(src.shape[:2], np.uint8)
    away[300:, :] = 255  # the lower part: no face there
    out, result = run(client, "face", src, mask=away)
    assert np.array_equal(out, src) and result.info["faces"] == []
    around = np.zeros(src.shape[:2], np.uint8)
    around[40:200, 150:300] = 255
    out, result = run(client, "face", src, mask=around)
    assert len(result.info["faces"]) == 1 and not np.array_equal(out, src)
    assert np.array_equal(out[around == 0], src[around == 0])


def test_face_strength_blends_and_keeps_one_flag(client: Client) -> None:
    src = degraded()
    full, _ = run(client, "face", src)
    half, result = run(client, "face", src, params={"face_strength": 0.5})
    (flag,) = result.info["flags"]  # the lighter touch's flag replaces the task's own
    assert flag["strength"] == 0.5
    x0, y0, x1, y1 = flag["box"]
    inner = np.s_[y0 + 10:y1 - 10, x0 + 10:x1 - 10]
    change_full = np.abs(full[inner].astype(float) - src[inner]).mean()
    change_half = np.abs(half[inner].astype(float) - src[inner]).mean()
    assert 0.4 < change_half / change_full < 0.6, (change_half, change_full)


def test_a_spandrel_face_model_is_aligned_run_and_pasted_back(client: Client, face_model: Path) -> None:
    src = astronaut()
    out, result = run(client, "face", src, model=str(face_model), params={"review": True})
    assert result.info["model"] == face_model.stem and result.info["tiles"] == 1
    assert result.info["flags"][0]["label"] == f"face restored by {face_model.stem}"
    weight = review(result)
    x0, y0, x1, y1 = result.info["faces"][0]["box"]
    assert weight[(y0 + y1) // 2, (x0 + x1) // 2] == 255
    untouched = weight == 0
    assert np.array_equal(out[untouched], src[untouched])
    assert not np.array_equal(out[~untouched], src[~untouched])
    ys, xs = np.nonzero(weight)  # the aligned 512 px crop maps back to about 2.5 face boxes around the face
    assert x0 - 60 <= xs.min() and xs.max() <= x1 + 60 and y0 - 60 <= ys.min() and ys.max() <= y1 + 60
    again, _ = run(client, "face", src, model=str(face_model))
    assert np.array_equal(again, out)  # seeded: a rerun gives the same face
    gray = np.repeat(cv2.cvtColor(src, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    gray_out, _ = run(client, "face", gray, model=str(face_model))
    assert not np.array_equal(gray_out, gray)
    assert np.ptp(gray_out.astype(int), axis=2).max() <= 1  # a black-and-white photo's face stays gray


@pytest.fixture(scope="module")
def face_model_daemon(tmp_path_factory: pytest.TempPathFactory, face_model: Path) -> Iterator[Path]:
    """A daemon whose model folder holds the face model, installed by `retouch models add`."""
    runtime, models = tmp_path_factory.mktemp("face-runtime"), tmp_path_factory.mktemp("face-models")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RETOUCH_MODELS_DIR", str(models))
        added = one_json(retouch("models", "add", face_model, "--license", "MIT", "--json"))
    assert added["task"] == "face" and added["architecture"] == "RestoreFormer", added
    proc = start_daemon(runtime, models)
    yield runtime
    stop_daemon(proc)


def test_model_auto_sends_faces_to_the_installed_face_model(client: Client, face_model_daemon: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    src = astronaut()[::2, ::2].copy()  # 256 px: upscaled x2 back to 512
    plain, plain_result = run(client, "upscale", src, model="auto", params={"scale": 2})
    monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(face_model_daemon))
    routed, result = run(Client(autostart=False, timeout=60), "upscale", src, model="auto", params={"scale": 2})
    (face,) = [r for r in result.info["routing"] if r["region"] == "face"]
    assert face["model"] == "tiny-restoreformer" and face["strength"] == 0.5, result.info["routing"]
    assert result.info["routing"][0] == {"region": "image", "model": "retouch-upscale-x2"}
    (flag,) = [f for f in result.info["flags"] if f["kind"] == "face"]
    assert flag["label"] == "face: tiny-restoreformer, strength 0.5"
    _, own = run(Client(autostart=False, timeout=60), "face", src, model="auto")
    assert own.info["model"] == "tiny-restoreformer" and own.info["routing"][0]["model"] == "tiny-restoreformer"
    (plain_face,) = [r for r in plain_result.info["routing"] if r["region"] == "face"]
    assert plain_face["model"] == "retouch-upscale-x2"  # no face model installed there: the task's own
    x0, y0, x1, y1 = face["box"]
    assert not np.array_equal(routed[y0:y1, x0:x1], plain[y0:y1, x0:x1])  # the face model's work, at the face
    assert np.array_equal(routed[y1 + 150:], plain[y1 + 150:])  # beyond its aligned crop: the same upscale


def test_models_that_cannot_restore_faces_are_refused(client: Client) -> None:
    expect_bad_request(client, "face", "retouch-upscale-x2", "face model", model="retouch-upscale-x2")
    expect_bad_request(client, "face", "retouch-damage", "face model", model="retouch-damage")
    expect_bad_request(client, "face", "sharpen", params={"sharpen": 1})


def test_cli_face_reports_faces_and_notes(client: Client, tmp_path: Path) -> None:
    from PIL import Image

    src, dst = tmp_path / "portrait.png", tmp_path / "portrait-face.png"
    Image.fromarray(degraded()).save(src)
    record = one_json(retouch("enhance", src, "-o", dst, "--task", "face", "--json"))
    assert record["task"] == "face" and len(record["faces"]) == 1 and len(record["flags"]) == 1
    assert dst.is_file()
    plain, plain_dst = tmp_path / "dune.png", tmp_path / "dune-face.png"
    Image.fromarray(crop_u8("dune-1.png", 96)).save(plain)
    proc = retouch("enhance", plain, "-o", plain_dst, "--task", "face")
    assert proc.returncode == 0 and "note: no face found" in proc.stdout, proc.stdout + proc.stderr


def test_a_gfpgan_file_runs_in_its_own_range_and_layout(tmp_path: Path) -> None:
    """GFPGAN as spandrel loads it (the published architecture at its one size, random weights, 340 MB): it takes
    [-1, 1] and a plain memory layout (its code `.view`s feature maps), and its decoder draws noise, seeded here.
    In-process: the same pipeline the daemon runs, without a second copy of the model in a daemon."""
    from retouch.engine import Engine
    from retouch.engine.loader import load_model
    from retouch.pipeline import run_pipeline
    from retouch.pixels import WorkImage
    from retouch.tasks import TaskContext, get_task
    from safetensors.torch import save_file
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(0)
    path = tmp_path / "gfpgan-random.safetensors"
    save_file({k: v.contiguous() for k, v in GFPGAN().state_dict().items()}, str(path))
    model = load_model(path, torch.device("cpu"), "bf16")
    assert model.purpose == "FaceSR" and model.signed and not model.channels_last
    ctx = TaskContext(Engine(device="cpu", precision="bf16"), lambda fraction, stage: None, lambda: None,
                      model=str(path))
    task = get_task("face")
    src = to_float(astronaut()[::2, ::2].copy())
    first = run_pipeline(task, ctx, WorkImage(src, None, False), None, task.parse_params({"review": True}))
    again = run_pipeline(task, ctx, WorkImage(src, None, False), None, task.parse_params({}))
    assert np.array_equal(first.image.color, again.image.color)  # seeded noise: the same face twice
    touched = first.review > 0
    assert touched.any() and np.array_equal(first.image.color[~touched], src[~touched])
    assert np.abs(first.image.color[touched] - src[touched]).mean() > 0.01
    assert first.info["flags"][0]["label"] == "face restored by gfpgan-random"


# ---------------------------------------------------------------- alignment


def test_template_landmarks_align_to_the_identity() -> None:
    matrix = align_matrix(TEMPLATE)
    assert np.allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-3)
    half = align_matrix(TEMPLATE * 2, size=SIZE)
    assert abs(scale_of(half) - 0.5) < 1e-3


def test_a_turned_face_is_turned_upright() -> None:
    angle = np.deg2rad(25)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = (TEMPLATE - 256) @ turn.T * 0.3 + (400, 300)
    matrix = align_matrix(points)
    mapped = np.c_[points, np.ones(5)] @ matrix.T
    assert np.abs(mapped - TEMPLATE).max() < 0.05
    assert abs(scale_of(matrix) - 1 / 0.3) < 1e-3


@pytest.mark.parametrize("points, message", [
    (np.zeros((4, 2)), "five"), (np.full((5, 2), np.nan), "five"), (np.ones((5, 2)), "coincide"),
])
def test_bad_landmarks_raise_value_error(points: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        align_matrix(points)


@pytest.mark.parametrize("shrink", [1.0, 0.25])  # a face larger than the crop (0.25) goes through an area copy
def test_align_and_paste_back_round_trip(shrink: float) -> None:
    image = to_float(astronaut())
    if shrink != 1.0:
        image = cv2.resize(image, None, fx=1 / shrink, fy=1 / shrink, interpolation=cv2.INTER_CUBIC)
    points = np.array([(203.3, 101.3), (246.7, 104.2), (224.0, 126.7), (205.0, 140.0), (245.0, 138.0)]) / shrink
    matrix = align_matrix(points)
    crop = align_face(image, matrix)
    assert crop.shape == (SIZE, SIZE, 3) and crop.dtype == np.float32 and 0 <= crop.min() and crop.max() <= 1
    back, weight = paste_face(image, crop, matrix)
    full = weight > 0.999
    assert full.sum() > 0.5 * (np.ptp(points[:, 0]) * 2) ** 2
    assert psnr(to_u8(back[full]), to_u8(image[full])) > (40 if shrink == 1.0 else 30)
    assert np.array_equal(back[weight == 0], image[weight == 0])


def test_crop_mask_fades_before_the_edges() -> None:
    mask = crop_mask(SIZE)
    assert mask[SIZE // 2, SIZE // 2] == 1.0 and mask[0, :].max() == 0.0 and mask[:, -1].max() == 0.0
    assert np.abs(np.diff(mask, axis=0)).max() < 0.025  # smooth: a smoothstep over 72 px, no step
