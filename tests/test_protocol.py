"""The wire codec on its own: signing, verification, replay, version mismatch, image descriptions (no daemon)."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import zmq
from retouch import protocol
from retouch.errors import AuthError, BadRequest, ProtocolMismatch, RetouchError
from retouch.protocol import ImageSpec, ReplayGuard, decode, encode, mask_spec, sign

KEY = b"0123456789abcdef" * 4
OTHER_KEY = b"fedcba9876543210" * 4


def make(buffers: tuple[bytes, ...] = (b"\x01\x02\x03\x04", b"\xff" * 10), **fields: object) -> list[bytes]:
    header = {"type": "enhance", "task": "upscale", **fields}
    return encode(KEY, header, list(buffers))


def resign(frames: list[bytes], key: bytes = KEY) -> list[bytes]:
    """Frames with a correct signature for their (possibly edited) header and buffers."""
    tag, _sig, header_json, *buffers = frames
    return [tag, sign(key, header_json, buffers), header_json, *buffers]


# ---- encode / decode -----------------------------------------------------------------------------------------------
def test_round_trip_keeps_header_and_buffers() -> None:
    bufs = (b"\x00\x01" * 50, b"", bytes(range(256)))
    frames = encode(KEY, {"type": "enhance", "task": "upscale", "params": {"scale": 2}}, list(bufs))
    assert frames[0] == protocol.PROTOCOL_TAG == b"retouch/1"
    assert len(frames) == 3 + len(bufs)
    msg = decode(KEY, frames)
    assert msg.type == "enhance"
    assert msg.header["task"] == "upscale"
    assert msg.header["params"] == {"scale": 2}
    assert msg.header["protocol"] == protocol.PROTOCOL_VERSION
    assert isinstance(msg.header["msg_id"], str) and len(msg.header["msg_id"]) == 32
    assert msg.buffers == list(bufs)


def test_encode_keeps_given_protocol_and_msg_id_and_accepts_memoryviews() -> None:
    frames = encode(KEY, {"type": "ping", "msg_id": "abc"}, [memoryview(b"pixels"), bytearray(b"mask")])
    msg = decode(KEY, frames)
    assert msg.header["msg_id"] == "abc"
    assert msg.buffers == [b"pixels", b"mask"]
    assert all(isinstance(f, bytes) for f in frames)


def test_encode_gives_fresh_msg_ids_and_does_not_touch_the_header() -> None:
    header = {"type": "ping"}
    a, b = decode(KEY, encode(KEY, header)), decode(KEY, encode(KEY, header))
    assert a.header["msg_id"] != b.header["msg_id"]
    assert header == {"type": "ping"}


def test_signature_is_hmac_of_header_and_buffer_digests() -> None:
    header_json = b'{"type":"ping"}'
    bufs = [b"abc", b"defg"]
    mac = hmac.new(KEY, header_json, hashlib.sha256)
    for b in bufs:
        mac.update(hashlib.sha256(b).digest())
    assert sign(KEY, header_json, bufs) == mac.hexdigest().encode()


def test_reply_header_addresses_the_parent() -> None:
    parent = {"msg_id": "m1", "type": "ping"}
    h = protocol.reply_header(parent, "reply", payload={"pong": True})
    assert h["parent_id"] == "m1"
    assert h["type"] == "reply"
    assert h["protocol"] == protocol.PROTOCOL_VERSION
    assert h["msg_id"] != "m1"
    assert "parent_id" not in protocol.reply_header(None, "ping")


# ---- signature rejection ---------------------------------------------------------------------------------------------
def test_tampered_header_is_rejected() -> None:
    frames = make()
    frames[2] = frames[2].replace(b'"upscale"', b'"denoise"')
    with pytest.raises(AuthError, match="signature"):
        decode(KEY, frames)


def test_tampered_buffer_is_rejected() -> None:
    frames = make()
    buf = bytearray(frames[3])
    buf[0] ^= 1
    frames[3] = bytes(buf)
    with pytest.raises(AuthError, match="signature"):
        decode(KEY, frames)


def test_added_buffer_is_rejected() -> None:
    with pytest.raises(AuthError):
        decode(KEY, [*make(), b"extra"])
    with pytest.raises(AuthError):
        decode(KEY, [*make(), b""])  # even an empty one


def test_removed_buffer_is_rejected() -> None:
    frames = make()
    with pytest.raises(AuthError):
        decode(KEY, frames[:-1])
    with pytest.raises(AuthError):
        decode(KEY, frames[:3])


def test_swapped_buffers_are_rejected() -> None:
    tag, sig, header, a, b = make()
    with pytest.raises(AuthError):
        decode(KEY, [tag, sig, header, b, a])


def test_wrong_key_is_rejected() -> None:
    with pytest.raises(AuthError, match="signature"):
        decode(OTHER_KEY, make())
    # and a message signed with another key does not verify here either
    with pytest.raises(AuthError):
        decode(KEY, encode(OTHER_KEY, {"type": "ping"}))


def test_tampered_or_empty_signature_is_rejected() -> None:
    frames = make()
    sig = bytearray(frames[1])
    sig[5] = ord("0") if sig[5] != ord("0") else ord("1")
    with pytest.raises(AuthError):
        decode(KEY, [frames[0], bytes(sig), *frames[2:]])
    with pytest.raises(AuthError):
        decode(KEY, [frames[0], b"", *frames[2:]])


@pytest.mark.parametrize("count", [0, 1, 2])
def test_missing_frames_are_bad_requests(count: int) -> None:
    frames = make()[:count]
    with pytest.raises(BadRequest, match=f"at least 3 frames.*got {count}"):
        decode(KEY, frames)


def test_foreign_first_frame_is_a_bad_request() -> None:
    frames = make()
    with pytest.raises(BadRequest, match="not a Retouch message"):
        decode(KEY, [b"jupyter/5", *frames[1:]])


def test_oversized_header_is_a_bad_request() -> None:
    header_json = json.dumps({"type": "ping", "pad": "x" * protocol.MAX_HEADER_BYTES}).encode()
    frames = [protocol.PROTOCOL_TAG, sign(KEY, header_json, []), header_json]
    with pytest.raises(BadRequest, match="limit"):
        decode(KEY, frames)


@pytest.mark.parametrize(
    ("header_json", "match"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"protocol": 1, "msg_id": "x"}', "no 'type'"),
        (b'{"protocol": 1, "type": 7}', "no 'type'"),
    ],
)
def test_signed_but_malformed_header_is_a_bad_request(header_json: bytes, match: str) -> None:
    frames = [protocol.PROTOCOL_TAG, sign(KEY, header_json, []), header_json]
    with pytest.raises(BadRequest, match=match):
        decode(KEY, frames)


def test_errors_are_retouch_errors_with_wire_codes() -> None:
    with pytest.raises(RetouchError) as exc:
        decode(OTHER_KEY, make())
    assert exc.value.to_wire()["code"] == "bad_signature"
    with pytest.raises(RetouchError) as exc2:
        decode(KEY, [b"x"])
    assert exc2.value.code == "bad_request"


# ---- replay --------------------------------------------------------------------------------------------------------
def test_replay_guard_rejects_a_replayed_message() -> None:
    guard = ReplayGuard()
    frames = make()
    decode(KEY, frames, guard)
    with pytest.raises(AuthError, match="replayed"):
        decode(KEY, list(frames), guard)
    decode(KEY, make(), guard)  # a fresh message (new msg_id, so a new signature) still passes


def test_replay_guard_forgets_the_oldest_signatures() -> None:
    guard = ReplayGuard(size=2)
    guard.check(b"a")
    guard.check(b"b")
    with pytest.raises(AuthError):
        guard.check(b"b")
    guard.check(b"c")  # pushes "a" out
    guard.check(b"a")
    with pytest.raises(AuthError):
        guard.check(b"c")


def test_bad_signature_does_not_poison_the_replay_guard() -> None:
    guard = ReplayGuard()
    frames = make()
    with pytest.raises(AuthError):
        decode(OTHER_KEY, frames, guard)
    decode(KEY, frames, guard)


# ---- protocol version ----------------------------------------------------------------------------------------------
def test_other_protocol_version_raises_mismatch_naming_both_versions() -> None:
    header_json = json.dumps({"protocol": 2, "type": "ping", "msg_id": "m2"}).encode()
    frames = [b"retouch/2", sign(KEY, header_json, []), header_json]
    with pytest.raises(ProtocolMismatch) as exc:
        decode(KEY, frames)
    msg = str(exc.value)
    assert "protocol 2" in msg
    assert "protocol 1" in msg
    assert exc.value.code == "protocol_mismatch"
    assert exc.value.header["msg_id"] == "m2"  # type: ignore[attr-defined]  # so the daemon can answer


def test_version_only_in_tag_or_only_in_header_is_a_mismatch() -> None:
    header_json = json.dumps({"type": "ping", "msg_id": "m"}).encode()
    with pytest.raises(ProtocolMismatch, match="protocol 3"):
        decode(KEY, [b"retouch/3", sign(KEY, header_json, []), header_json])
    header_json = json.dumps({"protocol": 7, "type": "ping", "msg_id": "m"}).encode()
    with pytest.raises(ProtocolMismatch, match="protocol 7"):
        decode(KEY, [protocol.PROTOCOL_TAG, sign(KEY, header_json, []), header_json])


def test_mismatch_with_a_wrong_signature_is_an_auth_error_first() -> None:
    header_json = json.dumps({"protocol": 2, "type": "ping", "msg_id": "m2"}).encode()
    with pytest.raises(AuthError):
        decode(KEY, [b"retouch/2", sign(OTHER_KEY, header_json, []), header_json])


# ---- ImageSpec -----------------------------------------------------------------------------------------------------
GOOD = {"width": 5, "height": 3, "dtype": "u16", "order": "RGB", "transfer": "linear"}


def test_image_spec_properties() -> None:
    spec = ImageSpec(5, 3, "u16", "RGB", "linear")
    assert (spec.channels, spec.itemsize, spec.row_bytes, spec.row_stride, spec.nbytes) == (3, 2, 30, 30, 90)
    padded = ImageSpec(5, 3, "u16", "RGB", "linear", stride=32)
    assert (padded.row_stride, padded.nbytes) == (32, 96)
    assert mask_spec(7, 4) == ImageSpec(7, 4, "u8", "GRAY", "srgb", 0)
    assert mask_spec(7, 4).nbytes == 28


@pytest.mark.parametrize(
    "spec",
    [
        ImageSpec(5, 3, "u16", "RGB", "linear"),
        ImageSpec(4, 2, "f32", "BGRA", "srgb", 80),
        ImageSpec(1, 1, "u8", "GRAY"),
        ImageSpec(3, 9, "f16", "RGBA", "linear", 0),
    ],
)
def test_image_spec_header_round_trip(spec: ImageSpec) -> None:
    d = spec.to_header()
    assert d["channels"] == spec.channels
    assert d["stride"] == spec.row_stride
    back = ImageSpec.from_header(json.loads(json.dumps(d)))
    assert back == spec
    assert back.nbytes == spec.nbytes


def test_image_spec_defaults_and_tight_stride_normalised() -> None:
    spec = ImageSpec.from_header({"width": 2, "height": 2})
    assert spec == ImageSpec(2, 2, "u8", "RGBA", "srgb", 0)
    assert ImageSpec.from_header(dict(GOOD, stride=30)).stride == 0
    assert ImageSpec.from_header(dict(GOOD, stride=40)).stride == 40


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"width": 0}, "image.width", "0"),
        ({"height": -3}, "image.height", "-3"),
        ({"width": protocol.MAX_SIDE + 1}, "image.width", str(protocol.MAX_SIDE + 1)),
        ({"width": 2.5}, "image.width", "2.5"),
        ({"height": True}, "image.height", "True"),
        ({"width": "5"}, "image.width", "'5'"),
        ({"dtype": "u12"}, "image.dtype", "'u12'"),
        ({"order": "CMYK"}, "image.order", "'CMYK'"),
        ({"transfer": "pq"}, "image.transfer", "'pq'"),
        ({"stride": 29}, "image.stride", "29"),
        ({"stride": -1}, "image.stride", "-1"),
        ({"stride": "wide"}, "image.stride", "'wide'"),
        ({"channels": 4}, "image.channels", "4"),
    ],
)
def test_image_spec_errors_name_the_field(change: dict, field: str, value: str) -> None:
    with pytest.raises(BadRequest) as exc:
        ImageSpec.from_header(dict(GOOD, **change))
    msg = str(exc.value)
    assert field in msg
    assert value in msg


def test_image_spec_error_messages_explain() -> None:
    with pytest.raises(BadRequest, match=r"u8, u16, f16, f32"):
        ImageSpec.from_header(dict(GOOD, dtype="u12"))
    with pytest.raises(BadRequest, match=r"RGBA, BGRA, RGB, GRAY"):
        ImageSpec.from_header(dict(GOOD, order="CMYK"))
    with pytest.raises(BadRequest, match=r"smaller than a row \(30 bytes\)"):
        ImageSpec.from_header(dict(GOOD, stride=29))
    with pytest.raises(BadRequest, match=r"channels is 4 but order RGB has 3"):
        ImageSpec.from_header(dict(GOOD, channels=4))
    with pytest.raises(BadRequest, match="mask.width"):
        ImageSpec.from_header({"width": 0, "height": 1}, what="mask")


@pytest.mark.parametrize("bad", [None, [], "RGBA", 5])
def test_image_spec_must_be_an_object(bad: object) -> None:
    with pytest.raises(BadRequest, match="'image' must be an object"):
        ImageSpec.from_header(bad)


def test_check_frame_size() -> None:
    spec = ImageSpec(4, 3, "u8", "RGBA")
    spec.check_frame(b"\x00" * 48)
    spec.check_frame(memoryview(bytearray(48)))
    for size in (0, 47, 49, 96):
        with pytest.raises(BadRequest) as exc:
            spec.check_frame(b"\x00" * size)
        msg = str(exc.value)
        assert f"has {size} bytes" in msg
        assert "needs 48" in msg
        assert "4x3 RGBA u8" in msg
    padded = ImageSpec(4, 3, "f32", "GRAY", stride=20)
    padded.check_frame(b"\x00" * 60)
    with pytest.raises(BadRequest, match=r"mask frame has 48 bytes.*stride 20 needs 60"):
        padded.check_frame(b"\x00" * 48, "mask")


# ---- over real sockets ---------------------------------------------------------------------------------------------
def test_round_trip_over_inproc_pair_sockets() -> None:
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://retouch-protocol-test")
        b.connect("inproc://retouch-protocol-test")
        pixels = bytes(range(256)) * 12
        mask = b"\x00\xff" * 8
        spec = ImageSpec(16, 12, "u8", "RGBA")
        header = {"type": "enhance", "task": "upscale", "image": spec.to_header(), "mask": True}
        a.send_multipart(encode(KEY, header, [pixels, mask]), copy=False)
        assert b.poll(5000)
        guard = ReplayGuard()
        frames = b.recv_multipart(copy=False)  # zmq.Frame objects, as the daemon may get them
        msg = decode(KEY, [f.bytes for f in frames], guard)
        assert msg.type == "enhance"
        assert ImageSpec.from_header(msg.header["image"]) == spec
        assert msg.buffers == [pixels, mask]
        # and back the other way, a reply addressed to the request
        b.send_multipart(encode(KEY, protocol.reply_header(msg.header, "accepted", job_id="j1", position=0)))
        assert a.poll(5000)
        reply = decode(KEY, a.recv_multipart())
        assert reply.type == "accepted"
        assert reply.header["parent_id"] == msg.header["msg_id"]
        # the same frames sent twice are caught by the guard
        a.send_multipart(encode(KEY, header, [pixels, mask]))
        assert b.poll(5000)
        raw = b.recv_multipart()
        decode(KEY, raw, guard)
        with pytest.raises(AuthError, match="replayed"):
            decode(KEY, raw, guard)
    finally:
        a.close(0)
        b.close(0)
        ctx.term()
