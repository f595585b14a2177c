"""Retouch wire protocol, version 1 (stdlib only: vendored verbatim into the Krita and GIMP plugins).

Every message is one ZeroMQ multipart message:

    [b"retouch/1", signature, header_json, *buffers]

- `signature` is the hex HMAC-SHA256, keyed with the connection key, of `header_json` followed by the SHA-256 digest
  of each buffer in order. Messages whose signature does not verify are dropped (and counted) by the daemon.
- `header_json` is a UTF-8 JSON object (at most 1 MiB, nested at most 32 deep). Every header has `protocol` (int),
  `type` (str), `msg_id` (str) and `time` (Unix seconds). Replies carry `parent_id`, the `msg_id` of the request
  they answer. The daemon refuses a message whose signature it has already seen or whose `time` is more than five
  minutes off (replays).
- Buffers are raw pixel frames, never base64 or PNG: an image is described by an `ImageSpec` in the header
  (`width`, `height`, `dtype` u8|u16|f16|f32, `order` RGBA|BGRA|RGB|GRAY, `transfer` srgb|linear, `stride` bytes
  per row) and travels as buffer 0; an optional selection mask (u8, one byte per pixel, 0 = keep, 255 = process,
  stride = width) travels as buffer 1.

Requests (client -> daemon): `enhance` {task, params, model?, image, mask?}, `preview` (same), `cancel` {job_id},
`status`, `models`, `tasks`, `ping`, `shutdown`.
Replies (daemon -> client): `accepted` {job_id, position}, `progress` {job_id, fraction, stage}, `result` {job_id,
image, info} + pixel buffer, `reply` {payload} for the small requests, `error` {error: {code, message}, job_id?}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from .errors import AuthError, BadRequest, ProtocolMismatch, Replayed, shown

PROTOCOL_VERSION = 1
TAG_PREFIX = b"retouch/"
PROTOCOL_TAG = TAG_PREFIX + str(PROTOCOL_VERSION).encode()

DTYPE_SIZES = {"u8": 1, "u16": 2, "f16": 2, "f32": 4}
ORDER_CHANNELS = {"RGBA": 4, "BGRA": 4, "RGB": 3, "GRAY": 1}
TRANSFERS = ("srgb", "linear")

REQUEST_TYPES = ("enhance", "preview", "cancel", "status", "models", "tasks", "ping", "shutdown")
REPLY_TYPES = ("accepted", "progress", "result", "reply", "error")

MAX_HEADER_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
MAX_ID_LENGTH = 128
MAX_SIDE = 65536


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ImageSpec:
    """How the pixels of one raw frame are laid out."""

    width: int
    height: int
    dtype: str = "u8"
    order: str = "RGBA"
    transfer: str = "srgb"
    stride: int = 0  # bytes per row; 0 means tightly packed

    @property
    def channels(self) -> int:
        return ORDER_CHANNELS[self.order]

    @property
    def itemsize(self) -> int:
        return DTYPE_SIZES[self.dtype]

    @property
    def row_bytes(self) -> int:
        return self.width * self.channels * self.itemsize

    @property
    def row_stride(self) -> int:
        return self.stride or self.row_bytes

    @property
    def nbytes(self) -> int:
        """Bytes a frame with this spec must have."""
        return self.row_stride * self.height

    def to_header(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = self.channels
        d["stride"] = self.row_stride
        return d

    @classmethod
    def from_header(cls, d: Any, what: str = "image") -> ImageSpec:
        """Validate a header's image description; raises BadRequest naming the field that is wrong."""
        if not isinstance(d, dict):
            raise BadRequest(f"'{what}' must be an object with width, height, dtype, order, transfer")
        for key in ("width", "height"):
            v = d.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SIDE:
                raise BadRequest(f"{what}.{key} must be an integer from 1 to {MAX_SIDE}, got {shown(v)}")
        dtype = d.get("dtype", "u8")
        if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
            raise BadRequest(f"{what}.dtype {shown(dtype)} is not one of {', '.join(DTYPE_SIZES)}")
        order = d.get("order", "RGBA")
        if not isinstance(order, str) or order not in ORDER_CHANNELS:
            raise BadRequest(f"{what}.order {shown(order)} is not one of {', '.join(ORDER_CHANNELS)}")
        transfer = d.get("transfer", "srgb")
        if not isinstance(transfer, str) or transfer not in TRANSFERS:
            raise BadRequest(f"{what}.transfer {shown(transfer)} is not one of {', '.join(TRANSFERS)}")
        channels = d.get("channels")
        if channels is not None and channels != ORDER_CHANNELS[order]:
            raise BadRequest(f"{what}.channels is {shown(channels)} but order {order} has {ORDER_CHANNELS[order]}")
        spec = cls(d["width"], d["height"], dtype, order, transfer, 0)
        stride = d.get("stride", 0)
        if not isinstance(stride, int) or isinstance(stride, bool) or (stride and stride < spec.row_bytes):
            raise BadRequest(f"{what}.stride {shown(stride)} is smaller than a row ({spec.row_bytes} bytes)")
        return cls(spec.width, spec.height, dtype, order, transfer, stride if stride != spec.row_bytes else 0)

    def check_frame(self, frame: bytes | memoryview, what: str = "image") -> None:
        size = len(frame)
        if size != self.nbytes:
            raise BadRequest(
                f"{what} frame has {size} bytes, but {self.width}x{self.height} {self.order} {self.dtype} "
                f"with stride {self.row_stride} needs {self.nbytes}"
            )


def box_from_text(value: Any) -> tuple[int, int, int, int] | None:
    """A box parameter's wire form, 'x,y,w,h' (four integers, spaces allowed), -> (x, y, w, h); None when `value`
    is not that (the caller names what is wrong)."""
    parts = value.split(",") if isinstance(value, str) else []
    if len(parts) != 4 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        return None
    x, y, w, h = (int(p) for p in parts)
    return x, y, w, h


def mask_spec(width: int, height: int) -> ImageSpec:
    return ImageSpec(width, height, "u8", "GRAY", "srgb", 0)


def sign(key: bytes, header_json: bytes, buffers: list[bytes] | tuple[bytes, ...]) -> bytes:
    mac = hmac.new(key, header_json, hashlib.sha256)
    for buf in buffers:
        mac.update(hashlib.sha256(buf).digest())
    return mac.hexdigest().encode()


def encode(key: bytes, header: dict[str, Any], buffers: list[bytes] | tuple[bytes, ...] = ()) -> list[bytes]:
    """Build the frames of one message. `header` gets `protocol` and a fresh `msg_id` if it lacks them."""
    header = dict(header)
    header.setdefault("protocol", PROTOCOL_VERSION)
    header.setdefault("msg_id", new_id())
    header.setdefault("time", round(time.time(), 3))
    header_json = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    frames = [bytes(b) if not isinstance(b, bytes) else b for b in buffers]
    return [PROTOCOL_TAG, sign(key, header_json, frames), header_json, *frames]


@dataclass
class Message:
    header: dict[str, Any]
    buffers: list[bytes]

    @property
    def type(self) -> str:
        return str(self.header.get("type", ""))


class ReplayGuard:
    """Refuses a captured message sent again: its signature was already seen, or its `time` is outside the window.

    Signatures are remembered for `window` seconds (older messages are refused by their time anyway), at most
    `size` of them.
    """

    def __init__(self, window: float = 300.0, size: int = 100_000) -> None:
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self.window = window
        self._size = size

    def check(self, signature: bytes) -> None:
        now = time.monotonic()
        while self._seen and next(iter(self._seen.values())) < now - self.window:
            self._seen.popitem(last=False)
        if signature in self._seen:
            raise Replayed("message replayed (signature already seen)")
        if len(self._seen) >= self._size:
            self._seen.popitem(last=False)
        self._seen[signature] = now

    def check_time(self, header: dict[str, Any]) -> None:
        sent = header.get("time")
        if not isinstance(sent, (int, float)) or isinstance(sent, bool):
            raise Replayed("message has no 'time': refused as a possible replay")
        try:
            sent = float(sent)
        except OverflowError:
            sent = math.inf
        if not math.isfinite(sent):
            raise Replayed("message 'time' is not a real time: refused as a possible replay")
        if abs(time.time() - sent) > self.window:
            raise Replayed(f"message time is {time.time() - sent:+.0f} s off, outside the {self.window:.0f} s window")


def json_depth(value: Any) -> int:
    depth, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        depth = max(depth, level)
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)
    return depth


def decode(key: bytes, frames: list[bytes], replay: ReplayGuard | None = None) -> Message:
    """Check frame count, then signature, then the protocol version, then parse the header.

    Raises AuthError (bad or missing signature), ProtocolMismatch (another protocol version, named in the message)
    or BadRequest (malformed frames or header).
    """
    if len(frames) < 3:
        raise BadRequest(f"a message needs at least 3 frames (tag, signature, header), got {len(frames)}")
    tag, signature, header_json, *buffers = (bytes(f) for f in frames)
    if not tag.startswith(TAG_PREFIX):
        raise BadRequest(f"not a Retouch message (first frame {tag[:32]!r})")
    if len(header_json) > MAX_HEADER_BYTES:
        raise BadRequest(f"header is {len(header_json)} bytes, the limit is {MAX_HEADER_BYTES}")
    expected = sign(key, header_json, buffers)
    if not hmac.compare_digest(expected, signature):
        raise AuthError("bad signature: the message was not signed with this daemon's key")
    if replay is not None:
        replay.check(signature)
    try:
        header = json.loads(header_json)
    except ValueError as exc:  # bad JSON, bad UTF-8, integers too long to convert
        raise _authenticated(BadRequest(f"header is not valid JSON: {shown(str(exc), 120)}"), None) from None
    except RecursionError:
        raise _authenticated(BadRequest(f"header JSON is nested deeper than {MAX_JSON_DEPTH} levels"), None) from None
    if not isinstance(header, dict):
        raise _authenticated(BadRequest("header must be a JSON object"), None)
    if json_depth(header) > MAX_JSON_DEPTH:
        raise _authenticated(BadRequest(f"header JSON is nested deeper than {MAX_JSON_DEPTH} levels"), None)
    tag_version = tag[len(TAG_PREFIX) :].decode(errors="replace")
    version = header.get("protocol", tag_version)
    if str(version) != str(PROTOCOL_VERSION) or tag != PROTOCOL_TAG:
        err = ProtocolMismatch(
            f"protocol version mismatch: the peer speaks Retouch protocol {version}, "
            f"this side speaks protocol {PROTOCOL_VERSION}; update the plugin or the daemon so they match"
        )
        raise _authenticated(err, header)
    msg_id = header.get("msg_id")
    if msg_id is not None and not (isinstance(msg_id, str) and len(msg_id) <= MAX_ID_LENGTH):
        raise _authenticated(BadRequest(f"'msg_id' must be a string of at most {MAX_ID_LENGTH} characters"), None)
    if not isinstance(header.get("type"), str):
        raise _authenticated(BadRequest("header has no 'type'"), header)
    if replay is not None:
        replay.check_time(header)
    return Message(header, buffers)


def _authenticated(err: BadRequest | ProtocolMismatch, header: dict[str, Any] | None) -> Exception:
    """Mark an error found after the signature verified: the sender is genuine and deserves an answer."""
    err.authenticated = True  # type: ignore[attr-defined]
    err.header = header  # type: ignore[attr-defined]
    return err


def reply_header(parent: dict[str, Any] | None, type_: str, **fields: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "type": type_, "msg_id": new_id()}
    if parent is not None and "msg_id" in parent:
        header["parent_id"] = parent["msg_id"]
    header.update(fields)
    return header
