"""The text guard (retouch.ops.textguard): a substituted character is flagged with both readings, text that only got
sharper is not, protect_text puts the conservative pixels back inside the boxes and nothing else, bad inputs are
refused by name, and the OCR package is imported lazily with a clear error when it is missing."""

from __future__ import annotations

import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from retouch.ops import textguard as tg
from text_pictures import bicubic, degrade, fonts, last_glyph_start, make_scene, paint, painted_box, text_mask

needs_ocr = pytest.mark.skipif(importlib.util.find_spec("rapidocr") is None, reason="rapidocr is not installed")

SIZE = (112, 352)  # high-resolution (result) size: rows, columns


def bold() -> Path:
    found = fonts()
    return next((f for f in found if f.name == "DejaVuSans-Bold.ttf"), found[0])


def sign(lines: list[str], height: int = 36) -> np.ndarray:
    """Dark text lines on a light, slightly tinted board, each line starting at the same place."""
    image = np.full((*SIZE, 3), (0.92, 0.9, 0.86), np.float32)
    for row, text in enumerate(lines):
        paint(image, text_mask(text, bold(), height), 16, 8 + row * 56, (0.08, 0.08, 0.1))
    return image


def substituted(before: str, after: str) -> tuple[np.ndarray, np.ndarray]:
    """A legible x2 source that says `before`, and a 'result' that says `after` in the same place."""
    source = degrade(sign([before, "STOP 42"]), 2, 0.6)
    return source, sign([after, "STOP 42"])


@needs_ocr
@pytest.mark.parametrize(("before", "after"), [("AB 183 CD", "AB 1B3 CD"), ("ROOM 5120", "R0OM 5120")])
def test_a_substituted_character_is_flagged_with_both_readings(before: str, after: str) -> None:
    source, result = substituted(before, after)
    flags = tg.text_flags(source, result)
    assert len(flags) == 1, [f.to_wire() for f in flags]  # the unchanged "STOP 42" line is not flagged
    flag = flags[0]
    assert "".join(flag.before.split()) == before.replace(" ", "")
    assert "".join(flag.after.split()) == after.replace(" ", "")
    x0, y0, x1, y1 = flag.box
    assert x0 <= 20 and y0 <= 12 and x1 >= 200 and 40 <= y1 <= 60  # the first line, in result pixels
    assert flag.evidence >= tg.MIN_EVIDENCE and max(flag.before_score, flag.after_score) >= tg.MIN_SCORE
    wire = json.loads(json.dumps(flag.to_wire()))
    assert wire["kind"] == "text" and wire["box"] == list(flag.box) and wire["after"] == flag.after


@needs_ocr
def test_a_line_the_first_crop_set_reads_the_same_and_sure_is_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    source, result = substituted("AB 183 CD", "AB 1B3 CD")
    engine = tg.ocr()
    calls: list[int] = []
    recognise = engine.posteriors
    monkeypatch.setattr(engine, "posteriors", lambda crops: calls.append(len(crops)) or recognise(crops))
    lines = tg.read_text(source, result)
    assert ["".join(line.after.split()) for line in lines] == ["AB1B3CD", "STOP42"]
    assert tg.changed(lines[0]) and not tg.changed(lines[1])
    one_set = [2 * len(moves) * len(margins) for moves, margins in tg.CROP_SETS]  # both images' crops, per set
    assert calls == one_set + one_set[:1]  # the changed line by both sets, "STOP 42" by the first alone
    assert min(lines[1].before_score, lines[1].after_score) >= tg.SETTLED_SCORE


@needs_ocr
def test_each_crop_is_read_padded_as_rapidocr_does_whatever_it_is_read_with() -> None:
    engine = tg.ocr()
    image = tg.to_bgr8(sign(["AB 183 CD", "STOP 42"]))
    wide = tg.to_bgr8(np.tile(sign(["AB 183 CD"]), (1, 2, 1)))[2:54]  # wider than REC_MIN_WIDTH at height 48
    crops = [image[2:54, 8:300], image[58:110, 8:250], wide, image[58:110, 8:40], image[2:54, 8:300]]
    together = engine.posteriors(crops)
    for crop, got in zip(crops, together, strict=True):
        w = int(np.ceil(tg.REC_HEIGHT * crop.shape[1] / crop.shape[0]))
        width = max(w, tg.REC_MIN_WIDTH)
        alone = np.zeros((1, 3, tg.REC_HEIGHT, width), np.float32)
        alone[0, :, :, :w] = (cv2.resize(crop, (w, tg.REC_HEIGHT)).astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
        probs = engine.rec_session(alone)[0]
        want = tg.Posterior.of(probs[:max(1, int(np.ceil(len(probs) * w / width)))], engine.characters)
        assert got.text == want.text and got.columns == want.columns
        assert np.allclose(got.probs, want.probs, atol=1e-5)  # no more padding than its own, whatever is read with it
    assert ["".join(p.text.split()) for p in together[:3]] == ["AB183CD", "STOP42", "AB183CDAB183CD"]


def test_settled_needs_the_same_reading_and_both_sure() -> None:
    box = (0, 0, 10, 10)
    assert tg.settled(tg.TextFlag(box, "STOP 42", "STOP42", 0.99, 0.985))
    assert not tg.settled(tg.TextFlag(box, "STOP 42", "STOP 4Z", 0.99, 0.99))
    assert not tg.settled(tg.TextFlag(box, "STOP 42", "STOP 42", 0.99, 0.97))


def text_line_with_detector_box(overline: str = "") -> tuple[np.ndarray, tg.Box, tg.Box]:
    """(a light board with one dark text line, BGR uint8; the line's true ink box, one pixel larger than its inked
    pixels on each side; a detector-like box around it, padded unevenly: 40 % of the text's height above, 20 %
    below, 14 px left and 3 px right, so that the fixed padding tight() assumes is several pixels off at every
    edge); with `overline` "across", a dark rule across the detector's box above the text (touching its sides, as the
    scene around a plate or a neighbouring line does), with "inside", the same rule 4 px short of its sides."""
    image = np.full((*SIZE, 3), (0.92, 0.9, 0.86), np.float32)
    mask = text_mask("AB 183 CD", bold(), 36)
    x, y = 30, 40
    paint(image, mask, x, y, (0.08, 0.08, 0.1))
    mh, mw = mask.shape
    true = painted_box(mask, x, y)
    detected = (true[0] - 14, y - round(0.4 * mh), true[2] + 3, y + mh + round(0.2 * mh))
    if overline:
        inset = 4 if overline == "inside" else 0
        image[detected[1] + 2:detected[1] + 5, detected[0] + inset:detected[2] - inset] = 0.1
    return tg.to_bgr8(image), true, detected


def within_a_pixel(found: tg.Box, true: tg.Box) -> bool:
    return all(abs(f - t) <= 1 for f, t in zip(found, true, strict=True))


def on_a_plate(image: np.ndarray, plate: tg.Box, scene_colour: tuple[int, int, int]) -> np.ndarray:
    """`image` inside `plate` (x0, y0, x1, y1), a flat scene of `scene_colour` (BGR) around it."""
    scene = np.zeros_like(image)
    scene[:] = scene_colour
    scene[plate[1]:plate[3], plate[0]:plate[2]] = image[plate[1]:plate[3], plate[0]:plate[2]]
    return scene


def test_the_ink_box_takes_its_edges_from_the_pixels() -> None:
    image, true, detected = text_line_with_detector_box()
    guess, found = tg.tight(detected), tg.ink_box(image, detected)
    assert all(abs(g - t) >= 4 for g, t in zip(guess, true, strict=True))  # the detector's padding misleads
    assert within_a_pixel(found, true), (found, true)
    blurred = tg.to_bgr8(cv2.GaussianBlur(image.astype(np.float32) / 255.0, (0, 0), 1.5))  # soft edges: the same
    assert within_a_pixel(tg.ink_box(blurred, detected), true)


def test_the_ink_box_leaves_out_what_touches_the_detectors_box() -> None:
    image, true, detected = text_line_with_detector_box(overline="across")
    found = tg.ink_box(image, detected)
    assert within_a_pixel(found, true), (found, true)


def test_the_ink_box_takes_its_background_from_right_around_the_text() -> None:
    """A light plate on a dark scene, the detector's box reaching past the plate: the plate is the text's
    background, so its edges are not taken for the text's (measured against the box's border, the plate was the
    ink)."""
    image, true, _ = text_line_with_detector_box()
    x0, y0, x1, y1 = true
    scene = on_a_plate(image, (x0 - 8, y0 - 8, x1 + 8, y1 + 8), (40, 40, 40))
    detected = (x0 - 12, y0 - 14, x1 + 11, y1 + 10)
    guess, found = tg.tight(detected), tg.ink_box(scene, detected)
    assert all(abs(g - t) >= 2 for g, t in zip(guess, true, strict=True))
    assert within_a_pixel(found, true), (found, true)


def text_on_a_plate(above: int) -> tuple[np.ndarray, tg.Box, tg.Box, tg.Box]:
    """`text_line_with_detector_box`'s line on a light plate reaching `above` px above its ink and 3 px on the other
    sides, on a green scene: (the picture, the ink's true box, the plate, a detector box fitted to the plate with the
    padding tight() assumes)."""
    image, true, _ = text_line_with_detector_box()
    x0, y0, x1, y1 = true
    plate = (x0 - 3, y0 - above, x1 + 3, y1 + 3)
    height = plate[3] - plate[1]
    dx, dy = round(tg.DETECTOR_PAD[0] * height), round(tg.DETECTOR_PAD[1] * height)
    detected = (plate[0] - dx, plate[1] - dy, plate[2] + dx, plate[3] + dy)
    return on_a_plate(image, plate, (60, 140, 60)), true, plate, detected


def test_the_ink_box_is_not_a_plate_the_detector_boxed() -> None:
    """A light plate 3 px around the text on a green scene, the detector's box fitted to the plate: the ring around
    the estimate lies on the scene, so the whole plate differs from that background. Text is never most of its box:
    the plate's inside is then the background (measured against the ring alone, the plate was the ink, 3-4 px too
    large on each side)."""
    scene, true, plate, detected = text_on_a_plate(above=3)
    assert tg.tight(detected) == plate
    found = tg.ink_box(scene, detected)
    assert within_a_pixel(found, true), (found, true)


def test_the_ink_box_of_a_plate_with_a_wide_border_above_the_text_follows_the_pixels(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The plate reaches 14 px above the text and 3 px below it: the detector's box fitted to the plate puts the
    estimated top 14 px high, more than ROW_TRUST of the height from the ink's top. On a plate the rows measured are
    trusted further (PLATE_ROW_TRUST): the box is the text's, not the plate's top."""
    scene, true, plate, detected = text_on_a_plate(above=14)
    assert tg.tight(detected) == plate and 14 > tg.ROW_TRUST * (plate[3] - plate[1])
    found = tg.ink_box(scene, detected)
    assert within_a_pixel(found, true), (found, true)
    monkeypatch.setattr(tg, "PLATE_ROW_TRUST", tg.ROW_TRUST)  # trusted no further than elsewhere: the plate's top
    assert tg.ink_box(scene, detected)[1] == plate[1]


def test_the_ink_box_does_not_follow_pixels_far_from_the_detectors_estimate() -> None:
    image, true, detected = text_line_with_detector_box(overline="inside")
    guess, found = tg.tight(detected), tg.ink_box(image, detected)
    assert found[1] == guess[1]  # the rule above the text is not taken for its top
    assert abs(found[3] - true[3]) <= 1
    assert tg.ink_box(np.zeros_like(image), detected) == guess  # nothing to measure: the estimate stands


def test_the_crops_reach_past_the_ink_box_on_the_left_and_right(monkeypatch: pytest.MonkeyPatch) -> None:
    image, _, detected = text_line_with_detector_box()
    ink = tg.ink_box(image, detected)
    read_around: list[list[tg.Box]] = []

    class Enough(Exception):
        pass

    def spy(inks: list[tg.Box], margins: tuple[float, ...], shape: tuple[int, ...]) -> list[tg.Box]:
        read_around.append(inks)
        raise Enough  # the crops' places are all this test needs

    monkeypatch.setattr(tg, "cuts_around", spy)
    with pytest.raises(Enough):
        tg.read_line(np.zeros_like(image), image, detected)  # the images differ: the line is read
    pad = round(tg.SIDE_PAD * (ink[3] - ink[1]))
    assert pad >= 3  # this text is 36 px tall
    assert read_around[0][0] == (ink[0] - pad, ink[1], ink[2] + pad, ink[3])  # the unmoved box of the first set
    assert [box[2] - box[0] for box in read_around[0]] == [ink[2] - ink[0] + 2 * pad] * len(tg.CROP_SETS[0][0])
    edge = np.zeros((40, 32, 3), np.uint8)
    monkeypatch.setattr(tg, "ink_box", lambda image, box: (1, 5, 30, 25))
    assert tg.reading_box(edge, (0, 0, 32, 40)) == (0, 5, 32, 25)  # within the image


@needs_ocr
@pytest.mark.parametrize(("seed", "text"), [(18, "exit"), (139, "sale")])
def test_the_sensitive_pass_finds_a_faint_line_the_first_misses_and_keeps_the_first_boxes(seed: int,
                                                                                           text: str) -> None:
    scene = make_scene(random.Random(seed), size=(160, 160), heights=(10, 24))  # a photo behind faint small text
    source = degrade(scene.image, 2, 0.8)
    image = tg.to_bgr8(bicubic(source, 2))
    box = next(r.box for r in scene.regions if r.text == text)
    first = [b for b in tg.ocr().detect(image) if b[3] - b[1] >= tg.MIN_HEIGHT]
    lines = tg.lines_in(tg.ocr(), image, image)
    assert not any(tg.overlap(b, box) for b in first)  # the first pass does not see it at all
    assert set(first) <= set(lines)  # the lines it found keep their boxes, so their readings do not change
    added = [b for b in lines if b not in first]
    found = [b for b in added if tg.overlap(b, box) >= 0.5 * tg.area(box)]
    assert len(found) == 1 and tg.iou(found[0], box) >= 0.4, (lines, box)
    assert all(tg.overlap(b, f) <= tg.NEW_LINE_OVERLAP * tg.area(b) for b in added for f in first)


def test_pieces_of_one_line_are_joined_and_neighbouring_lines_are_not() -> None:
    left, right = (50, 25, 201, 97), (177, 27, 306, 93)  # a plate's line boxed in two pieces at its word space
    assert tg.one_line(left, right) and tg.one_line(right, left)
    assert tg.one_line((10, 167, 312, 270), (197, 176, 304, 237))  # a word boxed again inside its line
    assert not tg.one_line(left, (205, 25, 330, 97))  # level, but side by side with a gap: two strings
    assert not tg.one_line((30, 38, 139, 93), (130, 48, 213, 112))  # overlapping, but not level: two strings
    assert not tg.one_line(left, (50, 100, 201, 172))  # the next line down
    pieces = {False: [left, (60, 120, 200, 150)], True: [right]}  # the sensitive pass found the second piece

    class Detector:
        def detect(self, image: np.ndarray, sensitive: bool = False) -> list[tg.Box]:
            return pieces[sensitive]

    image = np.zeros((200, 400, 3), np.uint8)
    lines = tg.lines_in(Detector(), image, image)  # type: ignore[arg-type]
    assert lines == [(50, 25, 306, 97), (60, 120, 200, 150)]  # one box for the line, read whole; the other kept


@needs_ocr
def test_text_that_only_got_sharper_is_not_flagged() -> None:
    sharp = sign(["AB 183 CD", "STOP 42"])
    source = degrade(sharp, 2, 0.6)
    assert tg.text_flags(source, bicubic(source, 2)) == []  # the result is the conservative image itself
    assert tg.text_flags(source, sharp) == []  # the result is the true sharp picture: same text, crisper
    readings = tg.read_text(source, sharp)  # the lines were found and read, not missed
    assert {"".join(r.after.split()) for r in readings} >= {"AB183CD", "STOP42"}


@needs_ocr
def test_a_line_whose_pixels_the_task_left_alone_is_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    source = degrade(sign(["AB 183 CD", "STOP 42"]), 1, 1.0)
    result = source.copy()
    result[:, 340:] = 0.5  # the task changed pixels beside the text only
    engine = tg.ocr()
    read: list[int] = []
    recognise = engine.posteriors
    monkeypatch.setattr(engine, "posteriors", lambda crops: read.append(len(crops)) or recognise(crops))
    lines = tg.read_text(source, result)
    assert len(lines) == 2 and read == []  # both lines found, neither read: they cannot read differently
    assert all(line.before == line.after == "" for line in lines) and tg.text_flags(source, result) == []
    result[30, 60] = 1.0 - result[30, 60]  # one pixel of the first line changed: that line, and only it, is read
    lines = tg.read_text(source, result)
    moves, margins = tg.CROP_SETS[0]
    assert read == [2 * len(moves) * len(margins)]  # the first line only, by the first crop set (it is `settled`)
    assert "".join(lines[0].after.split()) == "AB183CD" and lines[1].after == ""


def test_text_is_looked_for_only_where_the_images_differ() -> None:
    base = np.full((1536, 2048, 3), 200, np.uint8)
    assert tg.changed_windows(base, base.copy()) == []  # nothing changed: nothing to look at
    out = base.copy()
    out[700:705, 600:610] = 10  # one small repair
    out[1400:1410, 1900:1930] = 10  # and another, far from it
    windows = tg.changed_windows(base, out)
    assert len(windows) == 2, windows
    reach = tg.WINDOW_MARGIN + tg.WINDOW_BLOCK
    for (x0, y0, x1, y1), (px0, py0, px1, py1) in zip(windows, [(600, 700, 610, 705), (1900, 1400, 1930, 1410)],
                                                       strict=True):
        assert x0 <= px0 - tg.WINDOW_MARGIN and y0 <= py0 - tg.WINDOW_MARGIN  # the change and its margin inside
        assert x1 >= min(2048, px1 + tg.WINDOW_MARGIN) and y1 >= min(1536, py1 + tg.WINDOW_MARGIN)
        assert x0 >= px0 - reach and y0 >= py0 - reach and x1 <= px1 + reach and y1 <= py1 + reach  # no more
    out[1300:1310, 1500:1510] = 10  # a third, whose window meets the second's: one window holds both
    assert len(tg.changed_windows(base, out)) == 2
    rng = np.random.default_rng(0)
    out = np.clip(base.astype(int) + rng.integers(-1, 2, base.shape), 0, 255).astype(np.uint8)  # an upscale's noise
    assert tg.changed_windows(base, out) == [(0, 0, 2048, 1536)]


@needs_ocr
def test_a_repair_far_from_text_is_searched_alone_and_text_it_touched_is_found(monkeypatch: pytest.MonkeyPatch
                                                                                ) -> None:
    board = np.full((1024, 1400, 3), (0.92, 0.9, 0.86), np.float32)
    mask = text_mask("EXIT 42", bold(), 36)
    for x, y in ((40, 40), (900, 880)):  # two signs far apart
        paint(board, mask, x, y, (0.08, 0.08, 0.1))
    last = last_glyph_start(mask)  # the "2"
    source = board.copy()
    result = board.copy()
    result[960:1000, 60:100] = 0.5  # a repair near neither sign
    engine = tg.ocr()
    seen: list[int] = []
    detect = engine.detect
    monkeypatch.setattr(engine, "detect", lambda bgr, sensitive=False: seen.append(bgr.shape[0] * bgr.shape[1])
                        or detect(bgr, sensitive))
    lines = tg.read_text(source, result)  # at most the repair itself taken for a text line; neither sign
    assert all(line.box[0] < 400 and line.box[1] > 700 and line.before == "" for line in lines), lines
    assert 0 < max(seen) < 0.25 * 1024 * 1400  # each detection ran on the window alone
    seen.clear()
    result[875:885 + mask.shape[0], 900 + last:905 + mask.shape[1]] = 0.92  # the repair wiped the second sign's "2"
    flags = tg.text_flags(source, result)
    assert len(flags) == 1 and flags[0].box[0] >= 880 and flags[0].box[1] >= 860, [f.to_wire() for f in flags]
    assert "42" in flags[0].before and "42" not in flags[0].after
    assert max(seen) < 0.75 * 1024 * 1400


@needs_ocr
def test_same_size_task_compares_with_the_input_itself() -> None:
    source = degrade(sign(["AB 183 CD", "STOP 42"]), 1, 1.0)
    result = sign(["AB 1B3 CD", "STOP 42"])
    flags = tg.text_flags(source, result)
    assert [("".join(f.before.split()), "".join(f.after.split())) for f in flags] == [("AB183CD", "AB1B3CD")]


def crop_reading(text: str, sure: float = 0.95, doubts: dict[int, tuple[str, float]] | None = None) -> tg.Posterior:
    """A made-up crop's posterior that reads `text`, each character with probability `sure`, except those at the
    positions of `doubts`, where (character, p) gives another character probability p (the rest to `text`'s)."""
    engine = tg.ocr()
    doubts = doubts or {}
    probs = np.full((2 * len(text) + 1, len(engine.characters)), 1e-7, np.float32)
    probs[0::2, 0] = 1.0  # blanks between the characters
    for k, ch in enumerate(text):
        other, p = doubts.get(k, ("", 0.0))
        probs[2 * k + 1, engine.index[ch]] = sure - p
        if other:
            probs[2 * k + 1, engine.index[other]] = p
        probs[2 * k + 1, 0] = 1.0 - sure
    return tg.Posterior.of(probs / probs.sum(axis=1, keepdims=True), engine.characters)


def crop_set(before: tg.Posterior, after: tg.Posterior, crops: int = 4) -> tuple[list[tg.Posterior],
                                                                                 list[tg.Posterior]]:
    return [before] * crops, [after] * crops


@needs_ocr
def test_pool_flags_a_change_the_crop_sets_see_together_not_a_weak_flip_of_one() -> None:
    box = (0, 0, 60, 20)
    same = crop_reading("AB183")
    both = tg.pool(box, [crop_set(same, crop_reading("AB1B3")), crop_set(same, crop_reading("AB1B3"))])
    assert tg.changed(both) and (both.before, both.after) == ("AB183", "AB1B3") and both.evidence > 0
    # one set's crops tip the "8" weakly to "B" (0.55 against 0.4); the other's read the "8" firmly: no change
    weak = crop_reading("AB1B3", doubts={3: ("8", 0.4)})
    assert tg.changed(tg.reading_of(box, *crop_set(same, weak)))  # that set alone would flag it
    firm = crop_reading("AB183", doubts={3: ("B", 0.05)})
    pooled = tg.pool(box, [crop_set(same, weak), crop_set(same, firm)])
    assert not tg.changed(pooled) and pooled.after == "AB183"
    # the same weak flip in one set and a "B" nearly as likely as the "8" in the other: together, a change
    close = crop_reading("AB183", doubts={3: ("B", 0.45)})
    assert tg.changed(tg.pool(box, [crop_set(same, weak), crop_set(same, close)]))
    agreed = tg.pool(box, [crop_set(same, same), crop_set(same, same)])
    assert not tg.changed(agreed) and agreed.after == "AB183"


@needs_ocr
def test_pool_wants_every_set_to_see_a_change_of_punctuation_alone() -> None:
    box = (0, 0, 60, 20)
    dashed = crop_reading("65-Z2")
    lost = crop_set(dashed, crop_reading("65Z2"))  # this set's crops lose the dash in the result
    kept = crop_set(dashed, crop_reading("65-Z2", sure=0.55))  # this set's keep it, if barely
    together = tg.reading_of(box, lost[0] + kept[0], lost[1] + kept[1])
    assert tg.changed(together) and together.after == "65Z2"  # pooled, the dash is lost
    assert tg.changed(tg.reading_of(box, *lost)) and not tg.changed(tg.reading_of(box, *kept))
    one_set = tg.pool(box, [lost, kept])
    assert not tg.changed(one_set) and one_set.after == "65-Z2"  # the agreeing set's reading is reported
    every = tg.pool(box, [lost, lost])
    assert tg.changed(every) and every.after == "65Z2"  # a dash lost in every set's crops is a changed reading


@needs_ocr
def test_a_change_no_image_reads_confidently_is_not_flagged() -> None:
    assert tg.same_letters("AB-1.2", "AB12") and not tg.same_letters("AB12", "AB1Z")
    box = (0, 0, 20, 20)
    unsure = tg.pool(box, [crop_set(crop_reading("t", sure=tg.MIN_SCORE - 0.05),
                                    crop_reading("1", sure=tg.MIN_SCORE - 0.05))] * 2)
    assert unsure.before == "t" and unsure.after == "1" and not tg.changed(unsure)
    sure = tg.pool(box, [crop_set(crop_reading("t", sure=tg.MIN_SCORE + 0.05),
                                  crop_reading("1", sure=tg.MIN_SCORE + 0.05))] * 2)
    assert tg.changed(sure)


@needs_ocr
def test_a_near_tie_between_glyphs_hardly_told_apart_is_not_flagged_but_a_clear_flip_or_another_glyph_is() -> None:
    assert tg.only_confusable("SO06", "S 006") and tg.only_confusable("Il1", "1l|")
    assert not tg.only_confusable("S8O6", "SBO6") and not tg.only_confusable("S006", "S0065")
    box = (0, 0, 60, 20)

    def flip(before: str, after: str, doubt: float) -> tg.TextFlag:
        """Each image reads its string with the other's glyph at position 1 as likely as `doubt`."""
        return tg.pool(box, [crop_set(crop_reading(before, doubts={1: (after[1], doubt)}),
                                      crop_reading(after, doubts={1: (before[1], doubt)}))] * 2)

    tie = flip("SO06", "S006", 0.45)  # 0.5 against 0.45 in each image
    assert (tie.before, tie.after) == ("SO06", "S006") and 0 < tie.evidence < tg.CONFUSABLE_EVIDENCE
    assert not tg.changed(tie)
    clear = flip("SO06", "S006", 0.1)
    assert clear.evidence >= tg.CONFUSABLE_EVIDENCE and tg.changed(clear)
    eight = flip("S8O6", "SBO6", 0.45)  # the same near tie between "8" and "B" is a changed reading
    assert eight.evidence < tg.CONFUSABLE_EVIDENCE and tg.changed(eight)


def test_protect_text_puts_back_the_conservative_pixels_inside_and_nothing_far_outside() -> None:
    rng = np.random.default_rng(0)
    source = rng.random((40, 60, 3), dtype=np.float32)
    result = rng.random((80, 120, 3), dtype=np.float32)
    flag = tg.TextFlag((30, 20, 70, 40), "8", "B", 0.9, 0.9, 5.0)
    out = tg.protect_text(source, result, [flag])
    assert out.shape == result.shape and out.dtype == result.dtype
    base = tg.conservative(source, 2)
    p = tg.PROTECT_PAD
    assert np.array_equal(out[20 - p:40 + p, 30 - p:70 + p], base[20 - p:40 + p, 30 - p:70 + p])
    reach = p + int(np.ceil(tg.FEATHER)) + 1
    far = np.ones(result.shape[:2], bool)
    far[20 - reach:40 + reach, 30 - reach:70 + reach] = False
    assert np.array_equal(out[far], result[far])
    edge = out[30, 70 + p + 1]  # in the feather: between the two
    assert not np.array_equal(edge, result[30, 70 + p + 1]) and not np.array_equal(edge, base[30, 70 + p + 1])
    assert np.array_equal(tg.protect_text(source, result, []), result)


def test_protect_text_same_size_uses_the_input() -> None:
    rng = np.random.default_rng(1)
    source, result = rng.random((30, 30, 3), dtype=np.float32), rng.random((30, 30, 3), dtype=np.float32)
    out = tg.protect_text(source, result, [tg.TextFlag((5, 5, 15, 15), "0", "O", 0.9, 0.9, 3.0)])
    assert np.array_equal(out[5:15, 5:15], source[5:15, 5:15])
    assert np.array_equal(out[25:, 25:], result[25:, 25:])


@pytest.mark.parametrize(("source_shape", "result_shape", "message"), [
    ((10, 10), (20, 20, 3), "source must be an H x W x 3 array"),
    ((10, 10, 3), (20, 20, 4), "result must be an H x W x 3 array"),
    ((10, 10, 3), (15, 15, 3), "not the source 10x10 scaled by one integer factor"),
    ((10, 10, 3), (20, 30, 3), "not the source 10x10 scaled by one integer factor"),
    ((10, 10, 3), (5, 5, 3), "not the source 10x10 scaled by one integer factor"),
    ((0, 10, 3), (0, 20, 3), "source is empty"),
])
def test_bad_shapes_are_refused_by_name(source_shape: tuple[int, ...], result_shape: tuple[int, ...],
                                        message: str) -> None:
    source, result = np.zeros(source_shape, np.float32), np.zeros(result_shape, np.float32)
    with pytest.raises(ValueError, match=message):
        tg.text_flags(source, result)
    with pytest.raises(ValueError, match=message):
        tg.protect_text(source, result, [])


def test_missing_ocr_package_is_named_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tg._Ocr, "_instance", None)
    monkeypatch.setitem(sys.modules, "rapidocr", None)  # makes `import rapidocr` fail
    with pytest.raises(RuntimeError, match="rapidocr.*pip install rapidocr"):
        tg.text_flags(np.zeros((8, 8, 3), np.float32), np.zeros((16, 16, 3), np.float32))


def test_importing_the_guard_does_not_import_the_ocr_package() -> None:
    code = "import sys, retouch.ops.textguard; print('rapidocr' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
