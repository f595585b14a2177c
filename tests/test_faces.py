"""Face detection (MTCNN, vendored weights) and the face mask: retouch.ops.faces."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from retouch.ops import faces
from retouch.ops.faces import Face, detect_faces, face_mask, scale_faces

try:  # scikit-image's public-domain photos (the "bench" extra); the mask and input tests run without them
    from skimage import data as skimage_data
except ImportError:  # pragma: no cover
    skimage_data = None
NO_PHOTOS = "needs scikit-image's sample photos (pip install scikit-image)"
needs_photos = pytest.mark.skipif(skimage_data is None, reason=NO_PHOTOS)

HELDOUT = sorted((Path(__file__).parent / "data" / "heldout").glob("*.png"))
ASTRONAUT_FACE = (180, 80, 256, 160)  # measured by hand: hairline to chin, cheek to cheek (benchmarks/faces.py)


def iou(a: tuple[int, ...], b: tuple[float, ...]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def as_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    if skimage_data is None:
        pytest.skip(NO_PHOTOS)
    return as_float(skimage_data.astronaut())


def test_astronaut_face_found_and_nothing_else(astronaut):
    found = detect_faces(astronaut)
    assert len(found) == 1, found
    face = found[0]
    assert iou(face.box, ASTRONAUT_FACE) >= 0.5, face
    assert face.score >= 0.99
    assert all(isinstance(v, int) for v in face.box)


def test_astronaut_landmarks_where_measured_by_hand(astronaut):
    (face,) = detect_faces(astronaut)
    assert face.landmarks is not None and len(face.landmarks) == 5
    # pupils, nose tip and mouth corners read off a 6x enlargement of the face
    by_hand = [(203.3, 101.3), (246.7, 104.2), (224.0, 126.7), (205.0, 140.0), (245.0, 138.0)]
    for (x, y), (hx, hy) in zip(face.landmarks, by_hand, strict=True):
        assert abs(x - hx) <= 5 and abs(y - hy) <= 5, (face.landmarks, by_hand)


def test_landmarks_follow_a_mirrored_and_a_shrunk_face(astronaut):
    (face,) = detect_faces(astronaut)
    (mirrored,) = detect_faces(np.ascontiguousarray(astronaut[:, ::-1]))
    assert face.landmarks is not None and mirrored.landmarks is not None
    width = astronaut.shape[1]
    # the mirror's left eye is the original's right eye, reflected
    for (x, y), (mx, my) in zip(face.landmarks, [mirrored.landmarks[i] for i in (1, 0, 2, 4, 3)], strict=True):
        assert abs((width - 1 - mx) - x) <= 3 and abs(my - y) <= 3
    (small,) = detect_faces(cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA))
    assert small.landmarks is not None
    for (x, y), (sx, sy) in zip(face.landmarks, small.landmarks, strict=True):
        assert abs((sx + 0.5) * 2 - 0.5 - x) <= 4 and abs((sy + 0.5) * 2 - 0.5 - y) <= 4


@pytest.mark.parametrize("path", HELDOUT, ids=[p.stem for p in HELDOUT])
def test_no_face_on_heldout_landscapes(path):
    image = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert detect_faces(as_float(image)) == []


@needs_photos
@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea"])
def test_no_face_on_other_photos(name):
    assert detect_faces(as_float(getattr(skimage_data, name)())) == []


def test_found_after_2x_downscale(astronaut):
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    found = detect_faces(small)
    assert len(found) == 1
    assert iou(found[0].box, tuple(v / 2 for v in ASTRONAUT_FACE)) >= 0.5


@pytest.mark.parametrize("layout", ["HxW", "HxWx1", "HxWx3 gray"])
def test_found_in_grayscale(astronaut, layout):
    gray = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    image = {"HxW": gray, "HxWx1": gray[..., None], "HxWx3 gray": np.repeat(gray[..., None], 3, axis=2)}[layout]
    found = detect_faces(image)
    assert len(found) == 1
    assert iou(found[0].box, ASTRONAUT_FACE) >= 0.5


def test_other_dtypes_and_alpha(astronaut):
    u8 = skimage_data.astronaut()
    rgba = np.concatenate([astronaut, np.ones_like(astronaut[..., :1])], axis=2)
    for image in (u8, u8.astype(np.uint16) * 257, astronaut.astype(np.float64), rgba, astronaut[:, ::-1][:, ::-1]):
        found = detect_faces(image)
        assert len(found) == 1 and iou(found[0].box, ASTRONAUT_FACE) >= 0.5


def test_large_image_searched_downscaled_and_mapped_back(astronaut):
    big = np.zeros((3000, 4000, 3), np.float32)
    person = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    big[500:2548, 1000:3048] = person
    found = detect_faces(big)
    assert len(found) == 1
    want = tuple(v * 4 + o for v, o in zip(ASTRONAUT_FACE, (1000, 500, 1000, 500), strict=True))
    assert iou(found[0].box, want) >= 0.5
    assert 0 <= found[0].box[0] < found[0].box[2] <= 4000 and 0 <= found[0].box[1] < found[0].box[3] <= 3000


def test_sorted_by_score_and_on_the_wire(astronaut):
    pair = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    found = detect_faces(pair)
    assert len(found) == 2
    assert found[0].score >= found[1].score
    assert {f.box[0] < 512 for f in found} == {True, False}
    wire = found[0].to_wire()
    assert wire == {"kind": "face", "box": list(found[0].box), "score": round(found[0].score, 4)}


def test_blank_and_tiny_images_have_no_face():
    assert detect_faces(np.zeros((300, 400, 3), np.float32)) == []
    assert detect_faces(np.ones((8, 8, 3), np.float32)) == []


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((64, 64, 2), np.float32), "shape"),
        (np.zeros((64, 64, 3, 1), np.float32), "shape"),
        (np.zeros(64, np.float32), "shape"),
        (np.zeros((0, 64, 3), np.float32), "empty"),
        (np.zeros((64, 64, 3), bool), "dtype"),
        ([[0.0, 1.0]], "numpy array"),
    ],
)
def test_bad_input_raises_value_error_naming_it(image, message):
    with pytest.raises(ValueError, match=message):
        detect_faces(image)


def test_model_loaded_once_across_threads(astronaut, monkeypatch):
    monkeypatch.setattr(faces, "_MODEL", None)
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    results, models = [], []

    def work() -> None:
        results.append(detect_faces(small))
        models.append(faces._MODEL)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(m) for m in models}) == 1
    assert all(r == results[0] and len(r) == 1 for r in results)


def test_scale_faces():
    face = Face((10, 20, 50, 70), 0.97)
    assert scale_faces([face], 4) == [Face((40, 80, 200, 280), 0.97)]
    assert scale_faces([face], 0.5) == [Face((5, 10, 25, 35), 0.97)]
    marked = Face((10, 20, 50, 70), 0.97, ((20.0, 30.0), (40.0, 30.0), (30.0, 40.0), (22.0, 50.0), (38.0, 50.0)))
    (big,) = scale_faces([marked], 2)
    assert big.landmarks == ((40.5, 60.5), (80.5, 60.5), (60.5, 80.5), (44.5, 100.5), (76.5, 100.5))
    with pytest.raises(ValueError, match="factor"):
        scale_faces([face], 0)


def test_face_mask_shape_range_and_smoothness():
    face = Face((180, 80, 256, 160), 1.0)
    mask = face_mask(512, 512, [face])
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert mask[120, 218] == 1.0  # the face's centre
    assert mask[20, 20] == 0.0 and mask[400, 400] == 0.0 and mask[120, 330] == 0.0  # far away
    assert mask[82, 218] > 0.9 and mask[158, 218] > 0.9  # forehead and chin inside
    step = max(np.abs(np.diff(mask, axis=0)).max(), np.abs(np.diff(mask, axis=1)).max())
    assert step < 0.1  # no seam: the default feather is a quarter of the face's size
    assert 0.0 < mask[120, 270] < 1.0  # the falloff beside the cheek


def test_face_mask_feather_and_several_faces():
    faces_ = [Face((10, 10, 50, 60), 0.99), Face((100, 30, 180, 130), 0.95)]
    hard = face_mask(160, 200, faces_, feather=0)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    assert hard[35, 30] == 1.0 and hard[80, 140] == 1.0 and hard[150, 5] == 0.0
    wide = face_mask(160, 200, faces_, feather=40)
    assert (wide >= face_mask(160, 200, faces_)).all()
    assert face_mask(10, 10, []).max() == 0.0
    edge = face_mask(64, 64, [Face((0, 0, 64, 64), 1.0)])
    assert edge[32, 32] == 1.0
    with pytest.raises(ValueError, match="feather"):
        face_mask(10, 10, faces_, feather=-1)
    with pytest.raises(ValueError, match="size"):
        face_mask(0, 10, faces_)
