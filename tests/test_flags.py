"""Flags through the real daemon: faces given a lighter touch (face_strength), the text guard's report and
protection, and `model auto` routing, with the info the editors and `--json` read."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image
from retouch.client import Client
from retouch.errors import BadRequest
from retouch.pixels import frame_to_array, spec_for_array
from text_pictures import degrade, fonts, last_glyph_start, paint, text_mask

SIDE = 256  # the astronaut portrait's side: MTCNN finds her face at about (89, 30) - (135, 88)


def astronaut() -> np.ndarray:
    return np.asarray(Image.fromarray(skimage.data.astronaut()).resize((SIDE, SIDE), Image.Resampling.LANCZOS))


def enhance(client: Client, task: str, arr: np.ndarray, **params: object) -> tuple[np.ndarray, dict]:
    kwargs = {"model": params.pop("model")} if "model" in params else {}
    result = client.enhance(task, np.ascontiguousarray(arr).tobytes(), spec_for_array(arr), params=params, **kwargs)
    return frame_to_array(result.spec, result.pixels), result.info


def test_a_face_gets_the_lighter_touch_and_a_flag(client: Client) -> None:
    src = astronaut()
    lighter, info = enhance(client, "denoise", src, noise_level=25)
    full, full_info = enhance(client, "denoise", src, noise_level=25, face_strength=1.0)
    assert "flags" not in full_info  # face_strength 1: no detection, no flags
    (face,) = info["flags"]
    assert face["kind"] == "face" and face["strength"] == 0.5 and face["label"] == "face: strength 0.5"
    x0, y0, x1, y1 = face["box"]
    assert 70 <= x0 < x1 <= 155 and 10 <= y0 < y1 <= 110, face
    assert info["post"]["face_strength"] == 0.5
    src_f, lighter_f, full_f = (a.astype(np.float64) for a in (src, lighter, full))
    cy, cx, r = (y0 + y1) // 2, (x0 + x1) // 2, (x1 - x0) // 6
    centre = np.s_[cy - r:cy + r, cx - r:cx + r]
    change_light = np.abs(lighter_f[centre] - src_f[centre]).mean()
    change_full = np.abs(full_f[centre] - src_f[centre]).mean()
    assert 0.4 < change_light / change_full < 0.6, (change_light, change_full)  # half the change at the face
    far = np.s_[200:, :]  # below the shoulders, far from the face: the full result
    assert np.array_equal(lighter[far], full[far])


def test_strength_and_face_strength_multiply(client: Client) -> None:
    _, info = enhance(client, "denoise", astronaut(), noise_level=25, strength=0.6, face_strength=0.5)
    (face,) = info["flags"]
    assert face["strength"] == 0.3 and face["label"] == "face: strength 0.3"


def test_bad_face_strength_is_refused_by_name(client: Client) -> None:
    with pytest.raises(BadRequest, match="face_strength"):
        enhance(client, "denoise", astronaut(), face_strength=1.5)


def sign() -> np.ndarray:
    """A street sign, legible after a 2x downscale: what an upscaler reads the same before and after."""
    image = np.full((96, 320, 3), (0.92, 0.9, 0.86), np.float32)
    font = next((f for f in fonts() if f.name == "DejaVuSans-Bold.ttf"), fonts()[0])
    paint(image, text_mask("EXIT 42", font, 40), 16, 20, (0.08, 0.08, 0.1))
    return np.rint(degrade(image, 2, 0.6) * 255).astype(np.uint8)


def test_text_guard_reports_what_it_read_and_leaves_unchanged_text_alone(client: Client) -> None:
    src = sign()
    out, info = enhance(client, "upscale", src, scale=2, text_guard=True, face_strength=1.0)
    plain, _ = enhance(client, "upscale", src, scale=2, face_strength=1.0)
    assert info["post"]["text_guard"] == {"flagged": 0, "protected": False}, info.get("flags")
    assert "flags" not in info
    assert np.array_equal(out, plain)  # the guard only reads; without flags nothing changes


def test_a_repair_that_erases_a_digit_is_flagged_and_protect_text_keeps_the_line(client: Client) -> None:
    image = np.full((96, 320, 3), (0.92, 0.9, 0.86), np.float32)
    font = next((f for f in fonts() if f.name == "DejaVuSans-Bold.ttf"), fonts()[0])
    glyphs = text_mask("EXIT 42", font, 40)
    paint(image, glyphs, 16, 20, (0.08, 0.08, 0.1))
    src = np.rint(image * 255).astype(np.uint8)
    last = last_glyph_start(glyphs)  # the "2"
    damage = np.zeros((96, 320), np.uint8)
    damage[14:26 + glyphs.shape[0], 16 + last:20 + glyphs.shape[1]] = 255  # marked as damage by hand: the "2"
    params = {"detect": False, "mask_is": "damage", "face_strength": 1.0}
    plain = client.enhance("restore", src.tobytes(), spec_for_array(src), mask=damage.tobytes(), params=params)
    guarded = client.enhance("restore", src.tobytes(), spec_for_array(src), mask=damage.tobytes(),
                             params=dict(params, text_guard=True))
    assert guarded.info["post"]["text_guard"] == {"flagged": 1, "protected": False}
    (flag,) = guarded.info["flags"]
    assert "".join(flag["before"].split()) == "EXIT42" and "42" not in flag["after"], flag
    assert guarded.pixels == plain.pixels  # the guard only reads
    kept = client.enhance("restore", src.tobytes(), spec_for_array(src), mask=damage.tobytes(),
                          params=dict(params, protect_text=True))
    out = frame_to_array(kept.spec, kept.pixels)
    x0, y0, x1, y1 = kept.info["flags"][0]["box"]
    assert np.array_equal(out[y0:y1, x0:x1], src[y0:y1, x0:x1])  # the line as it was: its "2" is still there
    assert not np.array_equal(frame_to_array(plain.spec, plain.pixels)[y0:y1, x0:x1], src[y0:y1, x0:x1])


def test_model_auto_routes_and_reports_which_model_touched_what(client: Client) -> None:
    out, info = enhance(client, "upscale", sign(), scale=2, model="auto")
    assert info["model"] == "retouch-upscale-x2"
    assert info["routing"][0] == {"region": "image", "model": "retouch-upscale-x2"}
    assert info["post"]["text_guard"]["protected"] is True  # auto keeps text safe
    assert all(r["model"] == "bicubic" for r in info["routing"][1:] if r["region"] == "text")
    assert out.shape == (96, 320, 3)  # the 48 x 160 sign, x2
    _, portrait = enhance(client, "denoise", astronaut(), noise_level=10, model="auto")
    faces = [r for r in portrait["routing"] if r["region"] == "face"]
    assert faces == [{"region": "face", "box": portrait["flags"][0]["box"], "model": "retouch-denoise",
                      "strength": 0.5}]
