"""Pre-packed Redis commands (killkrill.streams.resp): the bytes on the wire."""

from __future__ import annotations

import pytest
from redis.connection import Connection

from killkrill.streams.resp import bulk_strings, pack_command, pack_with


def test_pack_command_is_resp_array_of_bulk_strings() -> None:
    assert pack_command("XACK", b"s", 7) == b"*3\r\n$4\r\nXACK\r\n$1\r\ns\r\n$1\r\n7\r\n"


def test_pack_command_refuses_what_redis_py_would_not_send() -> None:
    with pytest.raises(TypeError):
        pack_command("SET", "k", True)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pack_command("SET", "k", 1.5)  # type: ignore[arg-type]


def test_shared_tail_equals_packing_every_argument() -> None:
    ids = ["1-0", "1700000000000-12", "é-1"]  # the last one: byte length != char length
    tail = bulk_strings(ids)
    assert pack_with(("XDEL", "s"), tail, len(ids)) == pack_command("XDEL", "s", *ids)
    assert bulk_strings(ids[:2]) == b"$3\r\n1-0\r\n$16\r\n1700000000000-12\r\n"


def test_the_same_bytes_redis_py_sends() -> None:
    conn = Connection()
    args = ("XACK", "logs-stream", "log-worker", "1-0", "2-5")
    assert b"".join(conn.pack_command(*args)) == pack_command(*args)
