"""Fuzzing a live daemon over loopback: at least 10 000 malformed messages, then the daemon must still be alive,
answer a ping within 5 s, run a real job, and have counted what it dropped.

Every message is built by a seeded generator and carries what the daemon must do with it:
- "drop": not authenticated (garbage frames, bad tag, truncated, wrong key, tampered, wrong frame count, over-size
  header) or refused as a replay (same signature again, old/missing `time`): no answer, counted in
  status()["dropped"];
- "answer": signed with the real key (from the connection file) and fresh, so it reaches the header checks and
  validation: exactly one `error` (or, for the rare accidentally valid request, a `reply` / `accepted` and then a
  `result` or `error`), addressed to its msg_id (messages whose header is not a JSON object get an anonymous answer).
Replies are drained without blocking between batches and each one is decoded with the key: a reply that does not
decode, is of an unknown type, answers a message that should have been dropped, or answers nobody fails the test.
A few extra DEALER sockets send a burst and disconnect abruptly (their answers are not tracked).

Inputs that once killed or confused the daemon (huge integers, unhashable dtype, oversized ids, a client that stops
reading) have regression tests of their own below, each on a daemon of its own.

Figures are printed (pytest -s) and, when $RETOUCH_FUZZ_REPORT is set, a one-line summary is appended to that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
from daemon_process import start_daemon, stop_daemon
from retouch import connection, protocol
from retouch.client import Client
from retouch.errors import RetouchError
from retouch.protocol import ImageSpec

SEED = 20240611
MIN_MESSAGES = 10_000
MAX_MESSAGES = 12_000
TIME_BUDGET = 60.0  # seconds of sending; the count is asserted afterwards
PERSISTENT_SOCKETS = 4
DRAIN_TIMEOUT = 30.0  # after sending: time for the last answers and the accidentally valid jobs

# Wrong values of every JSON type, for any field.
GARBAGE: list[Any] = [
    None, True, False, 0, -1, 1, 2, 3, 7, 1.5, -0.0, 2**31, -(2**63), 2**64 + 1, 1e308, -1e308,
    "", "x", "0", "2", "u8", "RGBA", "upscale", "\u00e9\u4e2d\U0001f600", "\x00", "a" * 200,
    [], [1], [None], ["upscale"], {}, {"a": 1}, {"width": 8}, [[[]]],
]  # fmt: skip
BAD_SIDES: list[Any] = [0, -1, -65536, 65537, 2**40, 60000.0, "8", True, False, None, [], {}, [8], 8.5]
REQUESTS_WITHOUT_SHUTDOWN = [t for t in protocol.REQUEST_TYPES if t != "shutdown"]


@dataclass
class Case:
    frames: list[bytes]
    expect: str  # "drop" | "answer" | "anon" (answered without parent_id)
    kind: str
    key: str | None = None  # json.dumps(msg_id) for tracking, when the header has one
    signed: bool = False  # correctly signed with the daemon's key (a candidate for a replay)


@dataclass
class Tracker:
    """What one persistent socket sent and what came back."""

    expected: dict[str, str] = field(default_factory=dict)  # msg key -> kind, not answered yet
    answered: set[str] = field(default_factory=set)
    dropped_keys: dict[str, str] = field(default_factory=dict)  # msg key -> kind
    jobs: set[str] = field(default_factory=set)  # accepted, no result/error yet
    anon_expected: int = 0
    anon_answered: int = 0


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.Popen, dict]]:
    runtime = tmp_path_factory.mktemp("fuzz-runtime")
    models = tmp_path_factory.mktemp("fuzz-models")
    proc = start_daemon(runtime, models)
    info = connection.read_connection_file(runtime / "daemon.json")
    assert info is not None
    yield runtime, proc, dict(info)
    stop_daemon(proc)


# ---- the generator -------------------------------------------------------------------------------------------------
class Fuzzer:
    def __init__(self, key: bytes, seed: int) -> None:
        self.key = key
        self.rng = random.Random(seed)
        self.n = 0
        self.kinds: Counter[str] = Counter()

    # helpers
    def uid(self) -> str:
        self.n += 1
        return f"fz-{self.n}-{self.rng.getrandbits(32):08x}"

    def uint(self) -> int:
        self.n += 1
        return 10**12 + self.n

    def rbytes(self, lo: int = 0, hi: int = 64) -> bytes:
        return self.rng.randbytes(self.rng.randint(lo, hi))

    def signed_raw(self, header_json: bytes, buffers: list[bytes], tag: bytes = protocol.PROTOCOL_TAG) -> list[bytes]:
        return [tag, protocol.sign(self.key, header_json, buffers), header_json, *buffers]

    def signed(self, header: dict[str, Any], buffers: list[bytes] | None = None) -> tuple[list[bytes], str]:
        header = dict(header)
        header.setdefault("msg_id", self.uid())
        frames = protocol.encode(self.key, header, buffers or [])
        return frames, json.dumps(header["msg_id"])

    def small_image(self) -> tuple[dict[str, Any], bytes]:
        w, h = self.rng.randint(1, 8), self.rng.randint(1, 8)
        dtype = self.rng.choice(["u8", "u16", "f16", "f32"])
        order = self.rng.choice(["RGBA", "BGRA", "RGB", "GRAY"])
        spec = ImageSpec(w, h, dtype, order)
        frame = b"\x00" * spec.nbytes  # zeros: valid in every dtype (no NaN)
        return spec.to_header(), frame

    def garbage(self) -> Any:
        v = self.rng.choice(GARBAGE)
        return json.loads(json.dumps(v))  # a fresh copy

    # one message
    def make(self) -> Case:
        table = [  # (weight in percent, maker)
            (7, self.random_frames),
            (3, self.empty_frames),
            (4, self.truncated),
            (4, self.bad_tag),
            (5, self.wrong_key),
            (5, self.tampered),
            (3, self.frame_added_or_removed),
            (3, self.garbage_signature),
            (4, self.stale_time),
            (0.2, self.oversized_header),
            (6, self.bad_json),
            (4, self.deep_json),
            (4, self.non_dict_json),
            (4, self.bad_type_field),
            (5, self.protocol_mismatch),
            (5, self.unknown_type),
            (25, self.bad_enhance),
            (4, self.huge_declared_size),
            (3, self.mask_without_frame),
            (3, self.bad_cancel),
            (1, self.small_request),
            (0.2, self.valid_enhance),
            (1, self.signed_with_extra_buffers),
        ]
        weights, makers = zip(*table, strict=True)
        case = self.rng.choices(makers, weights)[0]()
        self.kinds[case.kind] += 1
        return case

    # -- dropped: not authenticated
    def random_frames(self) -> Case:
        n = self.rng.randint(1, 7)
        hi = 4096 if self.rng.random() < 0.05 else 64
        return Case([self.rbytes(0, hi) for _ in range(n)], "drop", "random_frames")

    def empty_frames(self) -> Case:
        return Case([b""] * self.rng.randint(1, 6), "drop", "empty_frames")

    def truncated(self) -> Case:
        frames, key = self.signed({"type": self.rng.choice(REQUESTS_WITHOUT_SHUTDOWN)})
        return Case(frames[: self.rng.randint(1, 2)], "drop", "truncated")

    def bad_tag(self) -> Case:
        frames, key = self.signed({"type": "ping"})
        frames[0] = self.rng.choice([b"", b"RETOUCH/1", b"retouch", b"retouch1", b"retouch\\1", b"\x00retouch/1",
                                     self.rbytes(1, 12)])
        if frames[0].startswith(protocol.TAG_PREFIX):
            frames[0] = b"x" + frames[0]
        return Case(frames, "drop", "bad_tag", key)

    def wrong_key(self) -> Case:
        header = {"type": self.rng.choice(protocol.REQUEST_TYPES), "msg_id": self.uid()}  # shutdown too
        frames = protocol.encode(self.rng.randbytes(32), header)
        return Case(frames, "drop", "wrong_key", json.dumps(header["msg_id"]))

    def tampered(self) -> Case:
        header = {"type": "enhance", "task": "upscale", "params": {"scale": 2}}
        img, frame = self.small_image()
        header["image"] = img
        frames, key = self.signed(header, [frame])
        i = self.rng.choice([1, 2, 3])
        buf = bytearray(frames[i])
        buf[self.rng.randrange(len(buf))] ^= self.rng.randint(1, 255)
        frames[i] = bytes(buf)
        return Case(frames, "drop", "tampered", key)

    def frame_added_or_removed(self) -> Case:
        img, frame = self.small_image()
        frames, key = self.signed({"type": "enhance", "task": "upscale", "image": img}, [frame])
        frames = frames[:3] if self.rng.random() < 0.5 else [*frames, self.rbytes()]
        return Case(frames, "drop", "frame_count_after_signing", key)

    def garbage_signature(self) -> Case:
        frames, key = self.signed({"type": "ping"})
        frames[1] = self.rng.choice([b"", b"0" * 64, self.rng.randbytes(32).hex().encode(), self.rbytes(1, 200),
                                     frames[1].upper(), frames[1][:-1]])
        return Case(frames, "drop", "garbage_signature", key)

    def oversized_header(self) -> Case:
        body = b'{"type":"ping","pad":"' + b"p" * (protocol.MAX_HEADER_BYTES + 10) + b'"}'
        return Case(self.signed_raw(body, []), "drop", "oversized_header")

    # -- dropped: signed, but refused as a replay
    def stale_time(self) -> Case:
        msg_id = self.uid()
        header: dict[str, Any] = {"protocol": 1, "type": self.rng.choice(REQUESTS_WITHOUT_SHUTDOWN), "msg_id": msg_id}
        choice = self.rng.randint(0, 5)
        if choice == 0:
            pass  # no time at all
        elif choice == 1:
            header["time"] = time.time() - self.rng.uniform(301, 10**7)
        elif choice == 2:
            header["time"] = time.time() + self.rng.uniform(301, 10**7)
        elif choice == 3:
            header["time"] = self.rng.choice([0, -1, 1e300, "now", None, True, [], {}])
        else:
            header["time"] = time.time() - 3600
        frames = self.signed_raw(json.dumps(header).encode(), [])
        return Case(frames, "drop", "stale_time", json.dumps(msg_id), signed=True)

    # -- answered: signed, fresh, but malformed header
    def bad_json(self) -> Case:
        n = self.uid().encode()
        forms = [
            b'{"n":"' + n + b'",' + self.rbytes(0, 40),
            b'{"n":"' + n + b'","x":"\xff\xfe"}',
            b'{"n":"' + n + b'"}}',
            b'{"n":"' + n + b"'}",
            b"{'n': '" + n + b"'}",
            b'{"n":"' + n + b'","type":"ping",}',
            n + b" " + self.rbytes(0, 32),
            b"\xef\xbb\xbf{" + n,
            b'{"n":"' + n + b'","x":tru}',
            b'{"n":"' + n + b'","x":01}',
        ]
        return Case(self.signed_raw(self.rng.choice(forms), []), "anon", "bad_json")

    def deep_json(self) -> Case:
        n = self.uid()
        depth = self.rng.choice([32, 33, 40, 100, 999, 1000, 5000, self.rng.randint(32, 3000)])
        if self.rng.random() < 0.01:
            depth = 100_000  # 200-600 KB: json.loads's RecursionError, still under MAX_HEADER_BYTES
        if self.rng.random() < 0.5:
            inner = "[" * depth + "]" * depth
        else:
            inner = '{"a":' * depth + "1" + "}" * depth
        body = f'{{"n":"{n}","type":"ping","x":{inner}}}'.encode()
        if self.rng.random() < 0.2:
            body = f'[{json.dumps(n)},{inner}]'.encode()
        return Case(self.signed_raw(body, []), "anon", "deep_json")

    def non_dict_json(self) -> Case:
        n = self.uid()
        body = self.rng.choice([
            json.dumps([n, "ping"]), json.dumps(n), str(self.n), f"{self.n}.5", json.dumps([{"type": "ping"}, n]),
            f"[null, {self.n}]", f"[true, {self.n}]",
        ]).encode()
        return Case(self.signed_raw(body, []), "anon", "non_dict_json")

    def bad_type_field(self) -> Case:
        msg_id: Any = self.rng.choice([self.uid(), self.uint(), [self.uid()], {"id": self.uid()}])
        header: dict[str, Any] = {"msg_id": msg_id}
        if self.rng.random() < 0.8:
            t = self.garbage()
            while isinstance(t, str):
                t = self.garbage()
            header["type"] = t
        frames, key = self.signed(header)
        return Case(frames, "answer", "bad_type_field", key, signed=True)

    def protocol_mismatch(self) -> Case:
        header: dict[str, Any] = {"type": self.rng.choice(REQUESTS_WITHOUT_SHUTDOWN), "msg_id": self.uid()}
        tag = protocol.PROTOCOL_TAG
        if self.rng.random() < 0.6:
            header["protocol"] = self.rng.choice([0, 2, 99, -1, "2", "1.0", 1.0, 1.5, None, [], [1], {}, "x" * 30])
        else:
            tag = self.rng.choice([b"retouch/2", b"retouch/", b"retouch/0", b"retouch/1.0", b"retouch/11",
                                   b"retouch/" + self.rbytes(1, 8)])
            if tag == protocol.PROTOCOL_TAG:
                tag = b"retouch/2"
        header["time"] = round(time.time(), 3)
        body = json.dumps(header).encode()
        return Case(self.signed_raw(body, [], tag), "answer", "protocol_mismatch", json.dumps(header["msg_id"]),
                    signed=True)

    def unknown_type(self) -> Case:
        t = self.rng.choice(["", "PING", "Ping", " ping", "enhance ", "result", "error", "reply", "accepted",
                             "progress", "exec", "\x00", "\u00e9t\u00e9", "shutdown\x00",
                             "".join(chr(self.rng.randint(32, 0x2FFF)) for _ in range(self.rng.randint(1, 40)))])
        if t in protocol.REQUEST_TYPES:
            t = t + "?"
        frames, key = self.signed({"type": t})
        return Case(frames, "answer", "unknown_type", key, signed=True)

    # -- answered: enhance with wrong fields
    def bad_enhance(self) -> Case:
        """An enhance/preview with 0-2 random changes (of any kind) and then one that surely makes it invalid, so
        that almost no job reaches the worker (the few accidentally valid ones are tolerated)."""
        img, frame = self.small_image()
        header: dict[str, Any] = {"type": self.rng.choice(["enhance", "preview"]), "task": "upscale",
                                  "params": {"scale": self.rng.choice([2, 4])}, "image": img}
        buffers = [frame]
        for _ in range(self.rng.randint(0, 2)):
            self.mutate(header, buffers)
        self.break_enhance(header, buffers)
        frames, key = self.signed(header, buffers)
        return Case(frames, "answer", "bad_enhance", key, signed=True)

    def valid_enhance(self) -> Case:
        img, frame = self.small_image()
        header: dict[str, Any] = {"type": "enhance", "task": "upscale", "params": {"scale": 2}, "image": img}
        frames, key = self.signed(header, [frame])
        return Case(frames, "answer", "valid_enhance", key, signed=True)

    def break_enhance(self, header: dict[str, Any], buffers: list[bytes]) -> None:
        """One change that makes any enhance request invalid, whatever else it holds."""
        rng = self.rng
        target = rng.choice(["task", "params", "model", "tile", "device", "image", "image_field", "buffers"])
        if target == "task":
            header["task"] = rng.choice([None, 1, [], {}, "UPSCALE", "no-such-task", "upscale ", "", "\u00e9"])
        elif target == "params":
            header["params"] = rng.choice([[], "scale=2", 2, True, {"scale": 3}, {"scale": "2"}, {"scale": 2.0},
                                           {"scale": True}, {"scale": None}, {"bogus": 1}, {"scale": 2, "x": 0}])
        elif target == "model":
            header["model"] = rng.choice([1, 0, [], {}, True, 1.5, ["retouch-upscale-x2"]])
        elif target == "tile":
            header["tile"] = rng.choice([31, 8193, 0, -32, 64.0, "64", True, False, 2**40, [], {}])
        elif target == "device":
            header["device"] = rng.choice(["gpu", "CPU", "cuda:0", "mps", "", 0, 1, True, [], {}])
        elif target == "image":
            if rng.random() < 0.4:
                header.pop("image", None)
            else:
                header["image"] = rng.choice([[8, 8], "8x8", None, 64, True, []])
        elif target == "image_field":
            image = header.get("image")
            if not isinstance(image, dict):
                image = dict(ImageSpec(4, 4).to_header())
                header["image"] = image
            f, bad = rng.choice([
                ("width", BAD_SIDES), ("height", BAD_SIDES), ("dtype", ["u32", "f64", "U8", "", 8, None, True]),
                ("order", ["ARGB", "rgba", "RGBX", "", 4, None]), ("transfer", ["sRGB", "gamma", "", 0, None, []]),
                ("channels", [0, 2, 5, -1, "4", 4.5, []]), ("stride", [-1, 1, "64", 1.5, [], True]),
            ])
            image[f] = rng.choice(bad)
        else:
            if rng.random() < 0.4:
                buffers.clear()
            else:
                buffers.extend(self.rbytes(0, 16) for _ in range(rng.randint(2, 4)))

    def mutate(self, header: dict[str, Any], buffers: list[bytes]) -> None:
        rng = self.rng
        target = rng.choice(["task", "params", "model", "tile", "device", "image", "image_field", "mask", "buffers",
                             "job_id", "msg_id"])
        if target == "task":
            header["task"] = rng.choice([self.garbage(), "UPSCALE", "no-such-task", "upscale ", "", None])
            if header["task"] == "upscale":
                header["task"] = "upscale2"
        elif target == "params":
            header["params"] = rng.choice([
                self.garbage(), {"scale": self.garbage()}, {"scale": 3}, {"scale": "2"}, {"scale": 2.0},
                {"scale": True}, {"bogus": 1}, {"scale": 2, "strength": 0.5}, [], "scale=2", 2,
            ])
            if header["params"] in (None, {}, {"scale": 2}, {"scale": 4}):
                header["params"] = {"scale": 3}
        elif target == "model":
            # strings are accepted here and fail in the worker (unknown model): no '/' or '~', nothing on disk
            header["model"] = rng.choice([self.garbage(), 1, [], {}, True, "no-such-model",
                                          "retouch-upscale-x3", "\u00e9"])
            if isinstance(header["model"], str):
                header["model"] = header["model"].replace("/", "_").replace("~", "_")
        elif target == "tile":
            header["tile"] = rng.choice([self.garbage(), 31, 8193, 0, -32, 64.0, "64", True, 2**40])
        elif target == "device":
            header["device"] = rng.choice([self.garbage(), "gpu", "CPU", "cuda:0", "mps", "", 0])
            if header["device"] in (None, "cpu", "cuda"):
                header["device"] = "tpu"
        elif target == "image":
            if rng.random() < 0.3:
                header.pop("image", None)
            else:
                header["image"] = rng.choice([self.garbage(), [8, 8], "8x8", None, 64])
        elif target == "image_field":
            image = header.get("image")
            if not isinstance(image, dict):
                image = dict(ImageSpec(4, 4).to_header())
                header["image"] = image
            f = rng.choice(["width", "height", "dtype", "order", "transfer", "channels", "stride", "drop"])
            if f in ("width", "height"):
                image[f] = rng.choice(BAD_SIDES + [self.garbage()])
            elif f == "dtype":
                image[f] = rng.choice(["u32", "f64", "U8", "", 8, None, True, 1.0, self.garbage()])
            elif f == "order":
                image[f] = rng.choice(["ARGB", "rgba", "RGBX", "", 4, None, self.garbage()])
            elif f == "transfer":
                image[f] = rng.choice(["sRGB", "gamma", "", 0, None, [], self.garbage()])
            elif f == "channels":
                image[f] = rng.choice([0, 2, 5, -1, "4", 4.5, [], self.garbage()])
            elif f == "stride":
                image[f] = rng.choice([-1, 1, 2**40, "64", 1.5, [], True, self.garbage()])
            else:
                image.pop(rng.choice(list(image) or ["width"]), None)
        elif target == "mask":
            header["mask"] = rng.choice([True, 1, "yes", [0], {"a": 1}])
            if rng.random() < 0.3:
                buffers.append(self.rbytes(0, 70))  # a mask frame of the wrong size (most likely)
        elif target == "buffers":
            choice = rng.randint(0, 3)
            if choice == 0:
                buffers.clear()
            elif choice == 1:
                buffers.extend([self.rbytes(0, 16) for _ in range(rng.randint(2, 4))])
            elif buffers:
                buffers[0] = buffers[0][: max(0, len(buffers[0]) - rng.randint(1, 8))] or self.rbytes(1, 3)
            else:
                buffers.append(b"")
        elif target == "job_id":
            header["job_id"] = self.garbage()
        else:
            header["msg_id"] = rng.choice([self.uint(), [self.uid()], {"m": self.uid()}, self.uid() * 3])

    def huge_declared_size(self) -> Case:
        w, h = self.rng.choice([(60000, 60000), (65536, 65536), (65536, 1), (1, 65536), (14142, 14142),
                                (60000, 3333), (65537, 1), (10000, 20000)])
        dtype = self.rng.choice(["u8", "u16", "f16", "f32"])
        order = self.rng.choice(["RGBA", "RGB", "GRAY", "BGRA"])
        image = {"width": w, "height": h, "dtype": dtype, "order": order}
        if self.rng.random() < 0.3:
            image["stride"] = self.rng.choice([2**31, 2**40, 10**30])
        frames, key = self.signed({"type": "enhance", "task": "upscale", "image": image,
                                   "mask": self.rng.random() < 0.3}, [self.rbytes(0, 64), self.rbytes(0, 8)][
                                       : self.rng.randint(0, 2)])
        return Case(frames, "answer", "huge_declared_size", key, signed=True)

    def mask_without_frame(self) -> Case:
        img, frame = self.small_image()
        frames, key = self.signed({"type": "enhance", "task": "upscale", "params": {"scale": 2}, "image": img,
                                   "mask": True}, [frame])
        return Case(frames, "answer", "mask_without_frame", key, signed=True)

    def bad_cancel(self) -> Case:
        job_id = self.rng.choice([self.garbage(), "job-1", "job-999999-deadbeef", self.uid()])
        header: dict[str, Any] = {"type": "cancel"}
        if self.rng.random() < 0.9:
            header["job_id"] = job_id
        frames, key = self.signed(header)
        return Case(frames, "answer", "bad_cancel", key, signed=True)

    # -- answered, valid
    def small_request(self) -> Case:
        frames, key = self.signed({"type": self.rng.choice(["ping", "status", "tasks", "models"]),
                                   "junk": self.garbage()})
        return Case(frames, "answer", "valid_small_request", key, signed=True)

    def signed_with_extra_buffers(self) -> Case:
        frames, key = self.signed({"type": "ping"}, [self.rbytes(0, 100) for _ in range(self.rng.randint(1, 40))])
        return Case(frames, "answer", "ping_with_buffers", key, signed=True)


# ---- checking what comes back --------------------------------------------------------------------------------------
@dataclass
class Stats:
    sent: int = 0
    sent_tracked: int = 0
    sent_abrupt: int = 0
    abrupt_sockets: int = 0
    replays: int = 0
    replies: int = 0
    errors: int = 0
    error_codes: Counter[str] = field(default_factory=Counter)
    reply_types: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    expected_drops: int = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


def check_reply(frames: list[bytes], key: bytes, tracker: Tracker, stats: Stats) -> None:
    stats.replies += 1
    try:
        msg = protocol.decode(key, frames)
    except RetouchError as exc:
        stats.problem(f"undecodable reply ({type(exc).__name__}: {exc.message[:200]})")
        return
    h = msg.header
    stats.reply_types[msg.type] += 1
    if msg.type not in protocol.REPLY_TYPES:
        stats.problem(f"reply of unknown type {msg.type!r}")
        return
    if msg.type == "error":
        err = h.get("error")
        if not (isinstance(err, dict) and isinstance(err.get("code"), str) and isinstance(err.get("message"), str)):
            stats.problem(f"malformed error payload {err!r}"[:300])
            return
        stats.errors += 1
        stats.error_codes[err["code"]] += 1
    if "parent_id" not in h:
        if msg.type != "error":
            stats.problem(f"{msg.type} reply without parent_id")
        tracker.anon_answered += 1
        return
    k = json.dumps(h["parent_id"])
    if k in tracker.dropped_keys:
        stats.problem(f"answered a message that must be dropped ({tracker.dropped_keys[k]}): {msg.type}")
        return
    if k in tracker.expected:
        kind = tracker.expected.pop(k)
        tracker.answered.add(k)
        if msg.type == "accepted":
            tracker.jobs.add(k)
        elif msg.type not in ("error", "reply"):
            stats.problem(f"first answer to {kind} is {msg.type}")
        return
    if k in tracker.jobs:
        if msg.type in ("result", "error"):
            tracker.jobs.discard(k)
            if msg.type == "result":
                spec = ImageSpec.from_header(h["image"])
                spec.check_frame(msg.buffers[0], "result")
        elif msg.type != "progress":
            stats.problem(f"{msg.type} for a running job")
        return
    if k in tracker.answered:
        stats.problem(f"second answer ({msg.type}) to {k[:80]}")
        return
    stats.problem(f"{msg.type} reply to an unknown parent {k[:80]}")


def drain(socks: list[zmq.Socket], trackers: list[Tracker], key: bytes, stats: Stats) -> None:
    for sock, tracker in zip(socks, trackers, strict=True):
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            check_reply(frames, key, tracker, stats)


def outstanding(trackers: list[Tracker]) -> int:
    return sum(len(t.expected) + len(t.jobs) + max(0, t.anon_expected - t.anon_answered) for t in trackers)


def dealer(ctx: zmq.Context, info: dict) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, 10_000)
    sock.connect(connection.endpoint(info))  # type: ignore[arg-type]
    return sock


def report(line: str) -> None:
    print(line)
    path = os.environ.get("RETOUCH_FUZZ_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


# ---- the fuzz run --------------------------------------------------------------------------------------------------
def test_fuzz_live_daemon(fuzz_daemon: tuple[Path, subprocess.Popen, dict]) -> None:
    runtime, proc, info = fuzz_daemon
    key = info["key"].encode()
    client = Client(autostart=False, timeout=30, path=runtime / "daemon.json")
    dropped_before = Counter(client.status()["dropped"])

    ctx = zmq.Context()
    fuzzer = Fuzzer(key, SEED)
    stats = Stats()
    socks = [dealer(ctx, info) for _ in range(PERSISTENT_SOCKETS)]
    trackers = [Tracker() for _ in socks]
    history: list[list[bytes]] = [[] for _ in socks]  # signed frames already sent, per socket (for replays)
    rng = random.Random(SEED + 1)
    started = time.monotonic()
    try:
        while stats.sent < MAX_MESSAGES and time.monotonic() - started < TIME_BUDGET:
            if rng.random() < 0.03:
                abrupt_burst(ctx, info, fuzzer, rng, stats)
                continue
            i = rng.randrange(len(socks))
            sock, tracker = socks[i], trackers[i]
            for _ in range(rng.randint(10, 40)):
                if history[i] and rng.random() < 0.04:  # a replay, on the socket that sent the original
                    frames = rng.choice(history[i])
                    sock.send_multipart(frames)
                    stats.sent += 1
                    stats.sent_tracked += 1
                    stats.replays += 1
                    stats.expected_drops += 1
                    continue
                case = fuzzer.make()
                sock.send_multipart(case.frames)
                stats.sent += 1
                stats.sent_tracked += 1
                if case.expect == "drop":
                    stats.expected_drops += 1
                    if case.key is not None:
                        tracker.dropped_keys[case.key] = case.kind
                elif case.expect == "anon" or not addressable(case.key):
                    tracker.anon_expected += 1
                else:
                    assert case.key is not None and case.key not in tracker.expected, case
                    tracker.expected[case.key] = case.kind
                if case.signed:
                    if len(history[i]) < 200:
                        history[i].append(case.frames)
                    else:
                        history[i][rng.randrange(200)] = case.frames
            drain(socks, trackers, key, stats)
        send_seconds = time.monotonic() - started
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while outstanding(trackers) and time.monotonic() < deadline:
            zmq.select(socks, [], [], 0.2)
            drain(socks, trackers, key, stats)
        time.sleep(0.3)  # anything that would come after the last expected answer (a second answer, a late one)
        drain(socks, trackers, key, stats)
    finally:
        for sock in socks:
            sock.close(0)
        ctx.term()
    total_seconds = time.monotonic() - started

    # the daemon survived, answers quickly and still works
    assert proc.poll() is None, f"the daemon died: {(runtime / 'test-daemon.log').read_text()[-3000:]}"
    t0 = time.monotonic()
    pong = Client(autostart=False, timeout=5, path=runtime / "daemon.json").ping()
    ping_ms = (time.monotonic() - t0) * 1000
    assert pong["pong"] is True and pong["pid"] == proc.pid
    spec = ImageSpec(16, 16, "u8", "RGBA")
    result = client.enhance("upscale", bytes(range(256)) * 4, spec, params={"scale": 2})
    assert (result.spec.width, result.spec.height, result.spec.order, result.spec.dtype) == (32, 32, "RGBA", "u8")
    assert len(result.pixels) == 32 * 32 * 4
    dropped_after = Counter(client.status()["dropped"])
    delta = dropped_after - dropped_before
    refused = delta["bad_signature"] + delta["malformed"] + delta["replayed"]

    missing = [(k, kind) for t in trackers for k, kind in t.expected.items()]
    anon_missing = sum(t.anon_expected - t.anon_answered for t in trackers)
    unfinished = sum(len(t.jobs) for t in trackers)
    line = (
        f"fuzz: sent={stats.sent} (tracked {stats.sent_tracked}, abrupt {stats.sent_abrupt} on "
        f"{stats.abrupt_sockets} sockets, replays {stats.replays}) in {send_seconds:.1f} s "
        f"({total_seconds:.1f} s with the final drain); replies={stats.replies} errors={stats.errors} "
        f"reply_types={dict(stats.reply_types)} error_codes={dict(stats.error_codes)}; "
        f"dropped (status delta)={sum(delta.values())} {dict(delta)}, expected drops from tracked sockets="
        f"{stats.expected_drops}; missing answers={len(missing)}+{anon_missing} anonymous, unfinished jobs="
        f"{unfinished}; ping after the run {ping_ms:.0f} ms; problems={len(stats.problems)}"
    )
    report(line)
    print("fuzz: messages per kind:", dict(sorted(fuzzer.kinds.items())))

    assert stats.sent >= MIN_MESSAGES, f"only {stats.sent} messages in {send_seconds:.0f} s"
    assert not stats.problems, "\n".join(stats.problems)
    assert not missing, f"{len(missing)} signed messages got no answer, e.g. {missing[:5]}"
    assert anon_missing == 0, f"{anon_missing} signed messages with a non-object header got no answer"
    assert unfinished == 0, f"{unfinished} accepted jobs never finished"
    assert ping_ms < 5000
    assert sum(delta.values()) > 0 and delta["malformed"] and delta["bad_signature"] and delta["replayed"], delta
    # every message a tracked socket sent that must be dropped was dropped and counted (abrupt ones may add more)
    assert refused >= stats.expected_drops, (dict(delta), stats.expected_drops)
    assert refused <= stats.expected_drops + stats.sent_abrupt, (dict(delta), stats.expected_drops)


def addressable(key: str | None) -> bool:
    """Replies carry the request's msg_id only when it is a short string; others are answered anonymously."""
    if key is None:
        return True
    msg_id = json.loads(key)
    return isinstance(msg_id, str) and len(msg_id) <= protocol.MAX_ID_LENGTH


def abrupt_burst(ctx: zmq.Context, info: dict, fuzzer: Fuzzer, rng: random.Random, stats: Stats) -> None:
    """A DEALER that sends a burst (signed requests among garbage) and disconnects without reading anything."""
    sock = dealer(ctx, info)
    stats.abrupt_sockets += 1
    for _ in range(rng.randint(3, 25)):
        if rng.random() < 0.2:
            frames, _ = fuzzer.signed({"type": rng.choice(["tasks", "status", "models"])})
        elif rng.random() < 0.05:
            header, frame = fuzzer.small_image()
            frames, _ = fuzzer.signed({"type": "enhance", "task": "upscale", "image": header}, [frame])
        else:
            frames = fuzzer.make().frames
        sock.send_multipart(frames)
        stats.sent += 1
        stats.sent_abrupt += 1
    if rng.random() < 0.5:
        sock.poll(rng.randint(0, 30))  # sometimes the daemon gets to answer before we vanish
    sock.close(0)


# ---- known bugs, each on a daemon of its own ------------------------------------------------------------------------
@pytest.fixture
def own_daemon(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen, dict]]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    models = tmp_path / "models"
    models.mkdir()
    proc = start_daemon(runtime, models)
    info = connection.read_connection_file(runtime / "daemon.json")
    assert info is not None
    yield runtime, proc, dict(info)
    stop_daemon(proc)


def send_signed_raw(info: dict, header_json: bytes, buffers: list[bytes] | None = None) -> None:
    ctx = zmq.Context.instance()
    sock = dealer(ctx, info)
    try:
        key = info["key"].encode()
        sock.send_multipart([protocol.PROTOCOL_TAG, protocol.sign(key, header_json, buffers or []), header_json,
                             *(buffers or [])])
        sock.poll(1000)
    finally:
        sock.close(0)


def alive_and_answering(runtime: Path, proc: subprocess.Popen) -> None:
    assert proc.poll() is None, f"the daemon died: {(runtime / 'test-daemon.log').read_text()[-1500:]}"
    assert Client(autostart=False, timeout=5, path=runtime / "daemon.json").ping()["pong"] is True


def test_signed_header_with_a_huge_integer_does_not_kill_the_daemon(
    own_daemon: tuple[Path, subprocess.Popen, dict],
) -> None:
    runtime, proc, info = own_daemon
    send_signed_raw(info, b'{"type":"ping","time":%.3f,"n":%s}' % (time.time(), b"9" * 5000))
    time.sleep(0.5)
    alive_and_answering(runtime, proc)


def test_signed_header_with_a_huge_time_does_not_kill_the_daemon(
    own_daemon: tuple[Path, subprocess.Popen, dict],
) -> None:
    runtime, proc, info = own_daemon
    send_signed_raw(info, b'{"type":"ping","time":1' + b"0" * 400 + b"}")
    time.sleep(0.5)
    alive_and_answering(runtime, proc)


def ask(info: dict, header: dict[str, Any], buffers: list[bytes] | None = None, raw: bytes | None = None,
        timeout: float = 10.0) -> list[bytes]:
    """Send a signed request (or a signed raw header); return the frames of its first answer."""
    ctx = zmq.Context.instance()
    sock = dealer(ctx, info)
    key = info["key"].encode()
    try:
        if raw is None:
            sock.send_multipart(protocol.encode(key, header, buffers or []))
        else:
            sock.send_multipart([protocol.PROTOCOL_TAG, protocol.sign(key, raw, []), raw])
        assert sock.poll(int(timeout * 1000)), "no answer"
        return sock.recv_multipart()
    finally:
        sock.close(0)


@pytest.mark.parametrize("field_name", ["dtype", "order"])
def test_unhashable_dtype_or_order_is_a_bad_request(
    fuzz_daemon: tuple[Path, subprocess.Popen, dict], field_name: str
) -> None:
    _, _, info = fuzz_daemon
    image = {"width": 1, "height": 1, "dtype": "u8", "order": "GRAY", field_name: ["u8"]}
    frames = ask(info, {"type": "enhance", "task": "upscale", "image": image}, [b"\x00"])
    msg = protocol.decode(info["key"].encode(), frames)
    assert msg.type == "error"
    assert msg.header["error"]["code"] == "bad_request", msg.header["error"]
    assert field_name in msg.header["error"]["message"]


def test_the_answer_to_a_valid_size_request_is_decodable(fuzz_daemon: tuple[Path, subprocess.Popen, dict]) -> None:
    _, _, info = fuzz_daemon
    header = {"type": "ping", "msg_id": "\u00e9" * 300_000, "time": round(time.time(), 3)}
    raw = json.dumps(header, ensure_ascii=False).encode()  # UTF-8, as the protocol allows: 600 KB
    assert len(raw) < protocol.MAX_HEADER_BYTES
    frames = ask(info, {}, raw=raw)
    msg = protocol.decode(info["key"].encode(), frames)  # a reply echoing the id would be too big to decode
    assert msg.type == "error"
    assert "msg_id" in msg.header["error"]["message"] and "parent_id" not in msg.header


def test_a_client_that_does_not_read_does_not_stall_the_others(
    own_daemon: tuple[Path, subprocess.Popen, dict],
) -> None:
    runtime, proc, info = own_daemon
    key = info["key"].encode()
    ctx = zmq.Context()
    slow = dealer(ctx, info)
    latencies: list[float] = []
    try:
        slow.setsockopt(zmq.SNDTIMEO, 2000)
        sent = 0
        with contextlib.suppress(zmq.Again):
            for _ in range(30_000):  # tens of MB of `tasks` answers that it never reads
                slow.send_multipart(protocol.encode(key, {"type": "tasks"}))
                sent += 1
        time.sleep(3)  # the daemon answers until the slow client's pipe is full
        pinger = Client(autostart=False, timeout=3, path=runtime / "daemon.json")
        for _ in range(3):
            t0 = time.monotonic()
            try:
                pinger.ping()
                latencies.append(time.monotonic() - t0)
            except RetouchError:
                latencies.append(float("inf"))
    finally:
        slow.close(0)
        ctx.term()
        proc.kill()  # its own daemon, still busy with the backlog: no need to wait for a clean stop
        proc.wait(10)
    print(f"ping latencies while one client does not read ({sent} requests): {[round(x, 2) for x in latencies]} s")
    assert max(latencies) < 1.0, latencies
