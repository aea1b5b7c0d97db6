"""Pre-packed Redis commands for the hot paths of the consumer (read, ack).

redis-py packs every argument of a command in Python (one ``join`` per argument, copying a
growing buffer) and runs each reply through its response callbacks. For ``XACK`` / ``XDEL``
with hundreds of IDs and ``XREADGROUP`` replies with hundreds of entries, that is most of
the client's CPU per entry. Here a whole pipeline is packed with one ``join`` and sent on a
connection of the client's own pool; the replies come back as the parser (hiredis) built
them, without callbacks: the caller reads RESP2 or RESP3 shapes itself.

Errors are redis-py's own: a connection lost or a timeout raises ``ConnectionError`` /
``TimeoutError`` (after the connection's retry policy, as for any command of the client);
an error reply raises :class:`redis.exceptions.ResponseError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

__all__ = ["Arg", "bulk_strings", "execute_packed", "pack_command", "pack_with"]

Arg = bytes | str | int


def _encode(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int) and not isinstance(arg, bool):
        return b"%d" % arg
    raise TypeError(f"cannot send {type(arg).__name__} to Redis")


def pack_command(*args: Arg) -> bytes:
    """One command in the Redis protocol (a RESP array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        value = _encode(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
    return b"".join(parts)


def bulk_strings(values: Sequence[str]) -> bytes:
    """``values`` as packed RESP bulk strings, to pass several times to :func:`pack_with`
    (e.g. the same IDs to XACK and XDEL)."""
    text = "".join([f"${len(v)}\r\n{v}\r\n" for v in values])
    if text.isascii():  # lengths counted in characters are byte lengths: the usual case
        return text.encode()
    return b"".join(b"$%d\r\n%b\r\n" % (len(b), b) for b in (v.encode() for v in values))


def pack_with(head: Sequence[Arg], tail: bytes, tail_count: int) -> bytes:
    """One command: the arguments ``head``, then ``tail_count`` arguments pre-packed by
    :func:`bulk_strings` in ``tail``."""
    parts = [b"*%d\r\n" % (len(head) + tail_count)]
    for arg in head:
        value = _encode(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
    parts.append(tail)
    return b"".join(parts)


async def execute_packed(client: aioredis.Redis, packed: bytes, replies: int) -> list[Any]:
    """Send ``packed`` (``replies`` commands) on one connection of ``client`` and return the
    raw replies in order. An error reply raises :class:`ResponseError` once every reply is
    read (so the connection stays in step); an error inside ``EXEC``'s array is returned as
    is, for the caller to check."""
    pool = client.connection_pool
    conn = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:

        async def attempt() -> list[Any]:
            await conn.send_packed_command(packed)
            out: list[Any] = []
            error: ResponseError | None = None
            for _ in range(replies):
                try:
                    out.append(await conn.read_response())
                except ResponseError as exc:
                    error = error or exc
                    out.append(exc)
            if error is not None:
                raise error
            return out

        async def fail(error: BaseException) -> None:
            await conn.disconnect()

        result: list[Any] = await conn.retry.call_with_retry(attempt, fail)
        return result
    except ResponseError:
        raise  # every reply was read: the connection is in step
    except BaseException:
        # Cancelled or failed half-way: replies may still be on the wire, never reuse it.
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
