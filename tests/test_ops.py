"""The classical operations around the models (retouch.ops), on real photos: the held-out crops of
tests/data/heldout/ (256 px, never seen by a training script), degraded synthetically with a known truth.

Noise estimation, auto exposure, white balance, film grain and colour fix. No daemon, no model.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest
from retouch.ops import tone
from retouch.ops.colorfix import adain_fix, color_fix, low_band, wavelet_fix
from retouch.ops.grain import GRAIN_STD_AT_FULL, add_grain, grain_field, midtone_weight
from retouch.ops.noise import estimate_sigma
from retouch.pixels import linear_to_srgb, srgb_to_linear

HELDOUT = Path(__file__).parent / "data" / "heldout"
ALL_CROPS = sorted(p.name for p in HELDOUT.glob("*.png"))
ONE_PER_PHOTO = ("dune-1.png", "eveningglow-4.png", "ladybird-1.png", "path-0.png")
WARM = np.array([1.3, 1.0, 0.7])  # a tungsten-like cast, as a gain on linear RGB
CASTS = [WARM, np.array([0.75, 1.0, 1.35]), np.array([1.0, 1.2, 0.8])]  # warm, cool (daylight shade), green
NEUTRAL = np.ones(3)


# ---- helpers -------------------------------------------------------------------------------------------------------
@functools.cache
def _load(name: str) -> np.ndarray:
    bgr = cv2.imread(str(HELDOUT / name), cv2.IMREAD_COLOR)
    assert bgr is not None and bgr.shape == (256, 256, 3), name
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / np.float32(255)
    rgb.setflags(write=False)
    return rgb


def crop(name: str) -> np.ndarray:
    """A held-out crop as H x W x 3 float32 sRGB in [0, 1] (a fresh, writable copy)."""
    return _load(name).copy()


def luminance(srgb: np.ndarray) -> np.ndarray:
    return srgb_to_linear(srgb) @ tone.LUMA


def neutral_scene(name: str) -> np.ndarray:
    """The crop's luminance on all three channels: real texture and tones, but a grey world by construction."""
    y = luminance(crop(name))
    return linear_to_srgb(np.repeat(y[:, :, None], 3, axis=2))


def with_cast(srgb: np.ndarray, cast: np.ndarray) -> np.ndarray:
    """The scene under a coloured illuminant: linear RGB times `cast`, clipped as a camera would."""
    return linear_to_srgb(np.clip(srgb_to_linear(srgb) * cast.astype(np.float32), 0.0, 1.0))


def exposed(srgb: np.ndarray, ev: float) -> np.ndarray:
    """The scene shot `ev` stops brighter (negative: darker), in linear light."""
    return linear_to_srgb(np.clip(srgb_to_linear(srgb) * np.float32(2.0**ev), 0.0, 1.0))


def mean_linear(srgb: np.ndarray) -> np.ndarray:
    return srgb_to_linear(srgb).reshape(-1, 3).mean(axis=0)


def mean_lab(srgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(srgb, 0, 1).astype(np.float32), cv2.COLOR_RGB2Lab).reshape(-1, 3).mean(axis=0)


def delta_e(a: np.ndarray, b: np.ndarray) -> float:
    """CIE76 distance between the mean CIELAB colours of two images."""
    return float(np.linalg.norm(mean_lab(a) - mean_lab(b)))


def high_pass(x: np.ndarray) -> np.ndarray:
    return x - cv2.GaussianBlur(x, (0, 0), 1.0)


def add_noise(img: np.ndarray, sigma: float, seed: int, clip: bool) -> np.ndarray:
    noisy = img + np.random.default_rng(seed).normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(noisy, 0.0, 1.0) if clip else noisy


# ---- noise estimation ----------------------------------------------------------------------------------------------
def test_heldout_crops_are_there() -> None:
    assert len(ALL_CROPS) == 32
    assert set(ONE_PER_PHOTO) <= set(ALL_CROPS)


@pytest.mark.parametrize("name", ONE_PER_PHOTO)
def test_estimate_sigma_of_a_clean_photo_is_near_zero(name: str) -> None:
    assert 0.0 <= estimate_sigma(crop(name)) < 3 / 255


@pytest.mark.parametrize(
    ("sigma255", "clip"), [(5, False), (15, False), (25, False), (50, False), (5, True), (15, True), (25, True)]
)
def test_estimate_sigma_of_gaussian_noise(sigma255: float, clip: bool) -> None:
    """Within 15 % (1.5 levels for faint noise) of the true sigma, float or clipped to [0, 1] as a file would be."""
    sigma = sigma255 / 255
    tolerance = max(0.15 * sigma, 1.5 / 255)
    for i, name in enumerate(ONE_PER_PHOTO):
        est = estimate_sigma(add_noise(crop(name), sigma, seed=100 + i, clip=clip))
        assert abs(est - sigma) <= tolerance, f"{name}: estimated {est * 255:.2f}, true {sigma255} (/255)"


def test_estimate_sigma_is_seeded_and_tolerates_tiny_images() -> None:
    noisy = add_noise(crop("dune-1.png"), 10 / 255, seed=1, clip=False)
    assert estimate_sigma(noisy) == estimate_sigma(noisy)
    assert estimate_sigma(noisy, seed=3) == pytest.approx(estimate_sigma(noisy), abs=0.5 / 255)
    assert estimate_sigma(noisy[:6, :40]) == 0.0  # smaller than one patch: nothing to measure
    assert estimate_sigma(noisy[:40, :6]) == 0.0


# ---- exposure ------------------------------------------------------------------------------------------------------
def test_exposure_ev_follows_a_one_stop_underexposure() -> None:
    """One stop darker in linear light asks for one stop more correction, wherever no limit is reached: crops the
    auto exposure brightens a little (positive, well below the +3 EV limit after the extra stop)."""
    checked = 0
    for name in ALL_CROPS:
        img = crop(name)
        ev = tone.exposure_ev(img)
        if not 0.0 < ev < tone.MAX_EV - 1.2:
            continue
        checked += 1
        darker = tone.exposure_ev(exposed(img, -1.0))
        assert darker - ev == pytest.approx(1.0, abs=0.15), f"{name}: {ev:.3f} EV -> {darker:.3f} EV one stop darker"
    assert checked >= 8, "too few held-out crops in the unclamped range to say anything"


def test_exposure_ev_limits() -> None:
    assert tone.exposure_ev(np.full((32, 32, 3), 0.002, np.float32)) == tone.MAX_EV  # near black: at most +3 EV
    assert tone.exposure_ev(np.zeros((32, 32, 3), np.float32)) == tone.MAX_EV
    white = tone.exposure_ev(np.ones((32, 32, 3), np.float32))
    assert -tone.MAX_EV <= white < 0.0  # a white frame is never brightened


@pytest.mark.parametrize("name", ["dune-1.png", "eveningglow-4.png", "ladybird-1.png", "eveningglow-7.png"])
def test_auto_exposure_converges(name: str) -> None:
    """After the correction, the exposure asks for (almost) nothing more: the gain really lands where it aimed."""
    dark = exposed(crop(name), -1.5)
    out, info = tone.auto_tone(dark, exposure=True, white_balance=False)
    assert set(info) == {"exposure_ev"}
    assert 0.5 < info["exposure_ev"] < tone.MAX_EV
    assert abs(tone.exposure_ev(out)) < 0.3
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
    assert luminance(out).mean() > 1.5 * luminance(dark).mean()


def test_apply_gains_of_one_is_the_identity() -> None:
    img = crop("ladybird-5.png")  # has clipped highlights
    out = tone.apply_gains(img, np.ones(3))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.abs(out - img).max() <= 1e-5


def test_apply_gains_below_one_is_a_plain_multiplication() -> None:
    img = crop("eveningglow-5.png")
    out = tone.apply_gains(img, np.array([0.5, 0.8, 0.9]))
    expected = linear_to_srgb(srgb_to_linear(img) * np.array([0.5, 0.8, 0.9], np.float32))
    assert np.abs(out - expected).max() <= 1e-5


@pytest.mark.parametrize("gain", [1.05, 1.5, 2.0, 4.0, 8.0])
def test_apply_gains_brightening_clips_nothing_new(gain: float) -> None:
    """The highlight shoulder: strictly monotonic up to the top (no two input levels merge, as a clip would do),
    1.0 still maps to 1.0, and nothing below 0.99 reaches the top."""
    ramp = np.linspace(0.0, 1.0, 4097, dtype=np.float32)
    img = np.repeat(ramp[None, :, None], 3, axis=2)
    out = tone.apply_gains(img, np.array([gain, gain, gain]))
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 0], out[:, :, 2])
    o = out[0, :, 0].astype(np.float64)
    assert np.all(np.diff(o) > 0), f"not strictly increasing at {ramp[1:][np.diff(o) <= 0][:5]}"
    assert o[-1] == pytest.approx(1.0, abs=1e-6)
    below = o[ramp < 0.99]
    assert below.max() < 1.0 and below.max() < o[-1] - 1e-5
    # the shadows and midtones get the full gain (the shoulder starts at 80 % linear)
    lin_in, lin_out = srgb_to_linear(ramp), srgb_to_linear(out[0, :, 0])
    mid = (lin_in > 0.05) & (lin_in * gain < 0.75)
    np.testing.assert_allclose(lin_out[mid], lin_in[mid] * gain, rtol=1e-4)


def test_apply_gains_mixed_gains_per_channel() -> None:
    img = crop("ladybird-5.png")  # clipped highlights stay at the top, in the brightened channel too
    out = tone.apply_gains(img, np.array([1.6, 1.0, 0.6]))
    clipped = img[:, :, 0] >= 1.0
    assert clipped.any()
    assert np.all(out[:, :, 0][clipped] >= 1.0 - 1e-6)
    assert np.all(out[:, :, 0][img[:, :, 0] < 0.99] < 1.0 - 1e-6)
    assert np.abs(out[:, :, 1] - img[:, :, 1]).max() <= 1e-5
    assert np.all(out[:, :, 2] <= img[:, :, 2] + 1e-6)


# ---- white balance -------------------------------------------------------------------------------------------------
def test_angular_error() -> None:
    assert tone.angular_error(np.array([1.0, 0, 0]), np.array([0, 2.0, 0])) == pytest.approx(90.0)
    assert tone.angular_error(WARM, 3 * WARM) == pytest.approx(0.0, abs=1e-5)
    assert tone.angular_error(WARM, NEUTRAL) == pytest.approx(13.8, abs=0.1)
    assert tone.angular_error(WARM, NEUTRAL) == pytest.approx(tone.angular_error(NEUTRAL, WARM))


@pytest.mark.parametrize("method", tone.WB_METHODS)
@pytest.mark.parametrize("cast", CASTS, ids=["warm", "cool", "green"])
def test_illuminant_of_a_grey_world_under_a_cast(method: str, cast: np.ndarray) -> None:
    """A scene with no colour of its own: every estimator finds the cast, far closer than the cast is to neutral."""
    cast_angle = tone.angular_error(cast, NEUTRAL)
    for name in ("dune-1.png", "eveningglow-4.png", "path-0.png"):
        est = tone.estimate_illuminant(with_cast(neutral_scene(name), cast), method)
        assert est.shape == (3,) and np.linalg.norm(est) == pytest.approx(1.0)
        err = tone.angular_error(est, cast)
        assert err < min(3.0, cast_angle / 3), f"{name}: {err:.2f} deg off a {cast_angle:.1f} deg cast"
        if method in ("gray_world", "shades_of_gray", "white_patch"):
            assert err < 0.5, f"{name}: {err:.2f} deg"


def test_shades_of_gray_mostly_removes_a_warm_cast_on_real_photos() -> None:
    """On the held-out crops (coloured scenes: sand, sunsets, leaves) under a warm cast, the estimate lands closer
    to the cast than neutral is, on average and on most crops, and closer than grey world does."""
    cast_angle = tone.angular_error(WARM, NEUTRAL)
    errors = {m: [] for m in ("gray_world", "shades_of_gray")}
    for name in ALL_CROPS:
        img = with_cast(crop(name), WARM)
        for method, errs in errors.items():
            errs.append(tone.angular_error(tone.estimate_illuminant(img, method), WARM))
    sog = np.array(errors["shades_of_gray"])
    assert sog.mean() < cast_angle - 1.5, sog.round(1)
    assert np.count_nonzero(sog < cast_angle) >= len(sog) * 0.6, sog.round(1)
    assert sog.mean() < np.mean(errors["gray_world"]), (sog.mean(), np.mean(errors["gray_world"]))


def test_illuminant_estimate_is_limited_towards_neutral() -> None:
    """A strongly coloured scene is taken for the scene's colour, not for a cast: at most MAX_WB_ANGLE."""
    leaves = crop("path-3.png")  # green undergrowth
    for method in tone.WB_METHODS:
        est = tone.estimate_illuminant(leaves, method)
        assert tone.angular_error(est, NEUTRAL) <= tone.MAX_WB_ANGLE + 1e-6, method
    flat = np.zeros((64, 64, 3), np.float32)  # nothing usable: neutral
    np.testing.assert_allclose(tone.estimate_illuminant(flat), NEUTRAL / np.sqrt(3))


@pytest.mark.parametrize("cast", CASTS, ids=["warm", "cool", "green"])
def test_white_balance_gains_neutralise_grey_and_keep_its_luminance(cast: np.ndarray) -> None:
    scene = neutral_scene("eveningglow-4.png")
    scene[100:140, 100:140] = linear_to_srgb(np.float32(0.2))  # a grey card, 20 % reflectance
    shot = with_cast(scene, cast)
    gains = tone.white_balance_gains(shot)
    assert gains.shape == (3,) and np.all(gains > 0)
    # by construction, the estimated illuminant's own luminance is kept
    illum = tone.estimate_illuminant(shot)
    assert float((illum * gains) @ tone.LUMA) == pytest.approx(float(illum @ tone.LUMA), rel=1e-6)
    fixed = tone.apply_gains(shot, gains)
    card_before = mean_linear(shot[100:140, 100:140])
    card_after = mean_linear(fixed[100:140, 100:140])
    assert tone.angular_error(card_before, NEUTRAL) > 5.0  # the cast was visible on the card
    assert tone.angular_error(card_after, NEUTRAL) < 0.5
    assert float(card_after @ tone.LUMA) == pytest.approx(float(card_before @ tone.LUMA), rel=0.02)
    assert tone.angular_error(mean_linear(fixed), NEUTRAL) < 0.5  # the whole grey world is grey again


def test_white_balance_gains_of_a_neutral_scene_are_one() -> None:
    for name in ("dune-1.png", "ladybird-5.png"):
        np.testing.assert_allclose(tone.white_balance_gains(neutral_scene(name)), NEUTRAL, atol=0.01)


def test_auto_tone_reports_what_it_did() -> None:
    img = with_cast(exposed(crop("eveningglow-5.png"), -1.0), WARM)
    same, info = tone.auto_tone(img, exposure=False, white_balance=False)
    assert same is img and info == {}
    _, info = tone.auto_tone(img, exposure=False, white_balance=True)
    assert set(info) == {"white_balance_gains"}
    r, g, b = info["white_balance_gains"]
    assert r < g < b  # a warm cast takes red down and blue up
    out, info = tone.auto_tone(img, exposure=True, white_balance=True)
    assert set(info) == {"white_balance_gains", "exposure_ev"}
    assert info["exposure_ev"] > 0.3
    assert out.dtype == np.float32 and out.shape == img.shape
    assert 0.0 <= out.min() and out.max() <= 1.0


# ---- grain ---------------------------------------------------------------------------------------------------------
def flat(level: float, h: int = 256, w: int = 256) -> np.ndarray:
    return np.full((h, w, 3), level, np.float32)


def test_grain_is_seeded() -> None:
    img = crop("ladybird-1.png")
    a = add_grain(img, 0.5, seed=7)
    b = add_grain(img, 0.5, seed=7)
    c = add_grain(img, 0.5, seed=8)
    assert a.dtype == np.float32 and a.shape == img.shape
    assert np.array_equal(a, b)
    assert not np.allclose(a, c, atol=1e-3)
    assert np.array_equal(img, crop("ladybird-1.png"))  # the input is not modified in place


def test_no_grain_returns_the_input() -> None:
    img = crop("dune-1.png")
    out = add_grain(img, 0.0, seed=3)
    assert out is img or np.array_equal(out, img)


@pytest.mark.parametrize("amount", [0.25, 0.5, 1.0])
def test_grain_strength_on_mid_grey(amount: float) -> None:
    img = flat(0.5)
    diff = add_grain(img, amount, seed=1).astype(np.float64) - img
    assert np.array_equal(diff[:, :, 0], diff[:, :, 1]) and np.array_equal(diff[:, :, 0], diff[:, :, 2])  # mono
    assert diff.std() == pytest.approx(amount * GRAIN_STD_AT_FULL, rel=0.15)
    assert abs(diff.mean()) < 0.1 * diff.std()


@pytest.mark.parametrize("level", [0.1, 0.25, 0.75, 0.9])
def test_grain_fades_towards_black_and_white(level: float) -> None:
    img = flat(level)
    diff = add_grain(img, 1.0, seed=2).astype(np.float64) - img
    expected = GRAIN_STD_AT_FULL * 4 * level * (1 - level)
    assert diff.std() == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("level", [0.0, 1.0])
def test_no_grain_in_pure_black_or_white(level: float) -> None:
    img = flat(level)
    out = add_grain(img, 1.0, seed=4)
    assert np.abs(out - img).max() < 1e-6


def test_grain_on_a_photo_is_monochrome_fine_and_midtone_weighted() -> None:
    img = crop("eveningglow-4.png")
    amount, seed = 0.8, 11
    diff = add_grain(img, amount, seed).astype(np.float64) - img
    inside = np.all((img > 0.15) & (img < 0.85), axis=2)  # no clipping there
    assert inside.mean() > 0.3
    assert np.abs(diff[:, :, 0] - diff[:, :, 2])[inside].max() < 1e-6
    field = grain_field(*img.shape[:2], seed)
    assert field.std() == pytest.approx(1.0, rel=1e-3)
    expected = amount * GRAIN_STD_AT_FULL * field * midtone_weight(img)
    np.testing.assert_allclose(diff[:, :, 1][inside], expected[inside], atol=1e-5)
    # fine grain: neighbouring pixels are only partly correlated
    corr = np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]
    assert 0.1 < corr < 0.9


# ---- colour fix ----------------------------------------------------------------------------------------------------
def drifted(reference: np.ndarray) -> np.ndarray:
    """What a model gone wrong in colour might return: sharper, and redder."""
    sharp = reference + 0.8 * (reference - cv2.GaussianBlur(reference, (0, 0), 1.5))
    sharp[:, :, 0] += 0.08
    return np.clip(sharp, 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize("name", ONE_PER_PHOTO)
def test_color_fix_removes_a_colour_drift(name: str) -> None:
    reference = crop(name)
    result = drifted(reference)
    assert delta_e(color_fix(result, reference, "none"), reference) > 3.0
    assert color_fix(result, reference, "none") is result
    for method in ("wavelet", "adain"):
        fixed = color_fix(result, reference, method)
        assert fixed.dtype == np.float32 and fixed.shape == reference.shape
        assert 0.0 <= fixed.min() and fixed.max() <= 1.0
        assert delta_e(fixed, reference) < 1.0, f"{method}: Delta E {delta_e(fixed, reference):.2f}"


@pytest.mark.parametrize("name", ONE_PER_PHOTO)
def test_wavelet_fix_keeps_the_results_detail(name: str) -> None:
    reference = crop(name)
    result = drifted(reference)
    fixed = wavelet_fix(result, reference)
    hp_fixed, hp_result, hp_ref = high_pass(fixed), high_pass(result), high_pass(reference)
    assert np.corrcoef(hp_fixed.ravel(), hp_result.ravel())[0, 1] > 0.9
    # the sharpening survives: as much fine detail as the result, clearly more than the reference had
    assert hp_fixed.std() == pytest.approx(hp_result.std(), rel=0.05)
    assert hp_fixed.std() > 1.3 * hp_ref.std()


def test_adain_fix_keeps_the_structure() -> None:
    reference = crop("ladybird-1.png")
    fixed = adain_fix(drifted(reference), reference)
    assert np.corrcoef(high_pass(fixed).ravel(), high_pass(drifted(reference)).ravel())[0, 1] > 0.9


def test_color_fix_of_the_reference_itself_changes_nothing() -> None:
    reference = crop("dune-1.png")
    assert np.abs(wavelet_fix(reference, reference) - reference).max() < 1e-5
    assert np.abs(adain_fix(reference, reference) - reference).max() < 2e-3  # a CIELAB round trip


def test_low_band_keeps_the_mean_and_drops_the_detail() -> None:
    img = crop("path-0.png")
    low = low_band(img)
    assert low.shape == img.shape and low.dtype == np.float32
    np.testing.assert_allclose(low.mean(axis=(0, 1)), img.mean(axis=(0, 1)), atol=2e-3)
    assert high_pass(low).std() < 0.1 * high_pass(img).std()
