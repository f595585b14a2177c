"""The editor-side helpers both plugins share (stdlib only, vendored): regions, row cropping, task parameters."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from retouch import editor
from retouch.editor import Rect


def test_whole_layer_when_no_or_empty_selection() -> None:
    canvas = Rect(0, 0, 100, 80)
    for sel in (None, Rect(10, 10, 0, 5)):
        region = editor.job_region(canvas, sel)
        assert region.target == region.sent == canvas


def test_selection_is_padded_for_context_and_clamped_to_the_canvas() -> None:
    region = editor.job_region(Rect(0, 0, 100, 80), Rect(70, 5, 20, 10), padding=32)
    assert region.target == Rect(70, 5, 20, 10)
    assert region.sent == Rect(38, 0, 62, 47)
    assert region.inner == Rect(32, 5, 20, 10)


def test_selection_outside_the_canvas_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the canvas"):
        editor.job_region(Rect(0, 0, 10, 10), Rect(20, 20, 5, 5))
    with pytest.raises(ValueError, match="layer is empty"):
        editor.job_region(Rect(0, 0, 0, 0), None)


@given(st.integers(1, 40), st.integers(1, 30), st.data())
def test_crop_rows_matches_numpy(w: int, h: int, data: st.DataObject) -> None:
    x = data.draw(st.integers(0, w - 1))
    y = data.draw(st.integers(0, h - 1))
    cw = data.draw(st.integers(1, w - x))
    ch = data.draw(st.integers(1, h - y))
    frame = np.arange(w * h * 4, dtype=np.uint32).astype(np.uint8).reshape(h, w, 4)
    got = editor.crop_rows(frame.tobytes(), w * 4, 4, Rect(x, y, cw, ch))
    assert got == frame[y:y + ch, x:x + cw].tobytes()


def test_transfer_from_profile_names() -> None:
    assert editor.transfer_for_profile("sRGB-elle-V2-g10.icc") == "linear"
    assert editor.transfer_for_profile("Rec2020-elle-V4-g10.icc") == "linear"
    assert editor.transfer_for_profile("sRGB-elle-V2-srgbtrc.icc") == "srgb"
    assert editor.transfer_for_profile("GIMP built-in Linear RGB") == "linear"


TASK = {"name": "upscale", "params": [{"name": "scale", "default": 2}, {"name": "strength", "default": 1.0}]}


def test_task_params_keep_what_the_task_takes_and_name_typos() -> None:
    assert editor.task_params(TASK, {"scale": 4, "face-strength": 0.5}) == {"scale": 4}
    with pytest.raises(ValueError, match="'strenght'.*scale, strength"):
        editor.task_params(TASK, {"strenght": 1})
    assert editor.output_scale(TASK, {}) == 2 and editor.output_scale(TASK, {"scale": 4}) == 4
    assert editor.output_scale({"name": "denoise", "params": []}, {}) == 1
    with pytest.raises(ValueError, match="offers no task 'paint'.*upscale"):
        editor.find_task([TASK], "paint")


def test_layer_names_say_task_scale_and_model() -> None:
    assert editor.layer_name(TASK, {"scale": 2, "model": "m"}) == "Retouch upscale \u00d72 (m)"
    assert editor.layer_name({"name": "tone"}, {"scale": 1}) == "Retouch tone"


def test_python_keys_for_bundled_pyzmq() -> None:
    assert editor.python_key((3, 10)) == "cp310"
    assert editor.python_key((3, 13)) == "abi3"


def test_flags_land_where_the_result_went_clipped_to_it() -> None:
    """Result pixels of the sent region (its `inner` part placed at `at` in the document) map to document pixels;
    a flag straddling the edge is clipped, one outside is dropped, a malformed one is skipped, labels kept."""
    inner, at = Rect(64, 32, 200, 100), Rect(500, 300, 200, 100)
    flags = [
        {"kind": "text", "box": [74, 42, 104, 62], "label": 'text "8" reads "B"'},
        {"kind": "face", "box": [40, 20, 84, 52], "label": "face: strength 0.5"},
        {"kind": "face", "box": [0, 0, 30, 30], "label": "outside"},
        {"kind": "text", "box": "nonsense"},
        {"box": [250, 120, 300, 200]},
    ]
    placed = editor.place_flags(flags, inner, at)
    assert [(f.kind, f.label, f.rect) for f in placed] == [
        ("text", 'text "8" reads "B"', Rect(510, 310, 30, 20)),
        ("face", "face: strength 0.5", Rect(500, 300, 20, 20)),
        ("flag", "flag", Rect(686, 388, 14, 12)),
    ]
    assert editor.place_flags([], inner, at) == []


def test_model_summary_names_task_scale_architecture_size_and_licence() -> None:
    line = editor.model_summary({"name": "x", "task": "upscale", "scale": 4, "architecture": "ESRGAN",
                                 "size": 67_040_000, "license": "CC-BY-NC-SA-4.0", "commercial": False,
                                 "source": "https://openmodeldb.info/models/4x-x"})
    assert line == ("task upscale, x4, ESRGAN, 67.0 MB, licence: CC-BY-NC-SA-4.0, NON-COMMERCIAL, "
                    "from https://openmodeldb.info/models/4x-x")
    assert "commercial use: unknown" in editor.model_summary({"name": "y"})


def test_options_text_is_typed_and_keeps_commas_inside_values() -> None:
    assert editor.parse_options("noise_level=10 color_fix=wavelet auto_exposure=TRUE grain=0.25") == {
        "noise_level": 10, "color_fix": "wavelet", "auto_exposure": True, "grain": 0.25}
    assert editor.parse_options("noise-level=5,grain_seed=3") == {"noise_level": 5, "grain_seed": 3}
    assert editor.parse_options("blur_trace=7,86,36,36 strength=0.5,") == {"blur_trace": "7,86,36,36", "strength": 0.5}
    assert editor.parse_options("  ") == {}


@pytest.mark.parametrize("text", ["noise_level", "=3", "blur_trace=7,86 36"])
def test_options_that_are_no_pairs_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="NAME=VALUE"):
        editor.parse_options(text)


def test_a_blur_trace_in_canvas_pixels_is_moved_into_the_sent_crop() -> None:
    sent = Rect(100, 40, 300, 200)
    moved = editor.canvas_params({"blur_trace": "150,60,30,30", "strength": 0.5}, sent)
    assert moved == {"blur_trace": "50,20,30,30", "strength": 0.5}
    assert editor.canvas_params({"strength": 1.0}, sent) == {"strength": 1.0}
    assert editor.canvas_params({"blur_trace": "1,2,3"}, sent) == {"blur_trace": "1,2,3"}  # the daemon names it
    with pytest.raises(ValueError, match="not inside the area sent"):
        editor.canvas_params({"blur_trace": "90,60,30,30"}, sent)
