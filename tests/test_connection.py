"""The connection file: private mode, atomic replacement, tolerant reading, stale-pid detection, careful removal."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from retouch import connection
from retouch.connection import ConnectionInfo


def info(pid: int | None = None, port: int = 5555, key: str = "k" * 64) -> ConnectionInfo:
    return {
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": port,
        "key": key,
        "pid": os.getpid() if pid is None else pid,
        "version": 1,
    }


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(30)
    return proc.pid


def test_runtime_dir_follows_the_override_and_is_private(
    private_dirs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert connection.runtime_dir() == private_dirs
    assert connection.connection_path() == private_dirs / "daemon.json"
    fresh = tmp_path / "a" / "b"
    monkeypatch.setenv("RETOUCH_RUNTIME_DIR", str(fresh))
    assert connection.runtime_dir() == fresh
    assert fresh.is_dir()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


def test_file_mode_is_0600_even_with_a_permissive_umask(private_dirs: Path) -> None:
    old = os.umask(0)
    try:
        path = connection.write_connection_file(info())
    finally:
        os.umask(old)
    assert path == private_dirs / "daemon.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # rewriting keeps it private
    connection.write_connection_file(info(port=6000))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_then_read_round_trip(private_dirs: Path) -> None:
    written = info()
    connection.write_connection_file(written)
    assert connection.read_connection_file() == written
    assert json.loads((private_dirs / "daemon.json").read_text()) == written


def test_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.json"
    assert connection.write_connection_file(info(port=7), path) == path
    assert connection.read_connection_file(path)["port"] == 7  # type: ignore[index]
    assert connection.read_connection_file() is None  # the default location was not touched


def test_write_is_atomic_and_leaves_no_temp_file(private_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = connection.write_connection_file(info(port=1111))
    before = path.read_bytes()

    def half_dump(obj: object, fh: object) -> None:
        fh.write('{"transport": "tcp", "host": "127.')  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(connection.json, "dump", half_dump)
    with pytest.raises(OSError, match="disk full"):
        connection.write_connection_file(info(port=2222))
    assert path.read_bytes() == before  # readers never see a half-written file
    assert connection.read_connection_file()["port"] == 1111  # type: ignore[index]
    assert sorted(p.name for p in private_dirs.iterdir()) == ["daemon.json"]


def test_write_replaces_by_rename(private_dirs: Path) -> None:
    path = connection.write_connection_file(info(port=1))
    inode = path.stat().st_ino
    connection.write_connection_file(info(port=2))
    assert path.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert connection.read_connection_file()["port"] == 2  # type: ignore[index]
    assert [p.name for p in private_dirs.iterdir()] == ["daemon.json"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage \x00\xff\xfe not json",
        b'{"transport": "tcp", "host": "127.0.0.1", "port": 55',  # half-written
        b"[1, 2, 3]",
        b'"a string"',
        b'{"host": "127.0.0.1", "port": "5555", "key": "k", "pid": 1, "version": 1}',  # port not an int
        b'{"host": "127.0.0.1", "port": 5555, "key": "k", "version": 1}',  # no pid
        b'{"host": "127.0.0.1", "port": 5555, "key": null, "pid": 1, "version": 1}',
    ],
)
def test_unreadable_file_reads_as_none(private_dirs: Path, content: bytes) -> None:
    (private_dirs / "daemon.json").write_bytes(content)
    assert connection.read_connection_file() is None
    assert connection.live_connection() is None


def test_missing_file_reads_as_none(private_dirs: Path) -> None:
    assert not (private_dirs / "daemon.json").exists()
    assert connection.read_connection_file() is None
    assert connection.live_connection() is None


def test_a_directory_in_place_of_the_file_reads_as_none(private_dirs: Path) -> None:
    (private_dirs / "daemon.json").mkdir()
    assert connection.read_connection_file() is None


def test_transport_defaults_to_tcp(private_dirs: Path) -> None:
    d = dict(info())
    del d["transport"]
    (private_dirs / "daemon.json").write_text(json.dumps(d))
    read = connection.read_connection_file()
    assert read is not None
    assert read["transport"] == "tcp"
    assert connection.endpoint(read) == "tcp://127.0.0.1:5555"


def test_live_connection_for_a_living_pid() -> None:
    connection.write_connection_file(info())
    assert connection.live_connection() == info()


def test_live_connection_is_none_for_a_dead_pid() -> None:
    pid = dead_pid()
    assert not connection.pid_alive(pid)
    connection.write_connection_file(info(pid=pid))
    assert connection.read_connection_file() is not None  # the file is fine, only stale
    assert connection.live_connection() is None


def test_pid_alive() -> None:
    assert connection.pid_alive(os.getpid())
    assert not connection.pid_alive(0)
    assert not connection.pid_alive(-1)
    assert not connection.pid_alive(dead_pid())


def test_remove_only_when_the_pid_matches(private_dirs: Path) -> None:
    path = connection.write_connection_file(info(pid=4242))
    connection.remove_connection_file(os.getpid())
    assert path.exists()
    assert connection.read_connection_file()["pid"] == 4242  # type: ignore[index]
    connection.remove_connection_file(4242)
    assert not path.exists()
    connection.remove_connection_file(4242)  # already gone: no error


def test_remove_leaves_an_unreadable_file_alone(private_dirs: Path) -> None:
    path = private_dirs / "daemon.json"
    path.write_text("{half")
    connection.remove_connection_file(os.getpid())
    assert path.read_text() == "{half"


def test_remove_with_explicit_path(tmp_path: Path) -> None:
    path = connection.write_connection_file(info(pid=99), tmp_path / "d.json")
    connection.remove_connection_file(98, path)
    assert path.exists()
    connection.remove_connection_file(99, path)
    assert not path.exists()


def test_new_key_is_random_hex() -> None:
    a, b = connection.new_key(), connection.new_key()
    assert a != b
    assert len(a) == 64
    int(a, 16)


def test_endpoint() -> None:
    assert connection.endpoint(info(port=1234)) == "tcp://127.0.0.1:1234"
