"""What Redis says about a stream's delivery state: XINFO STREAM, XINFO GROUPS, XPENDING.

The replies are parsed here, once (:func:`parse_stream_info`, :func:`parse_groups`,
:func:`parse_pending_summary`: pure, over what redis-py returns, bytes or text), and read
through :func:`stream_info`, :func:`groups` and :func:`pending_summary`, which translate a
missing stream or group into "nothing there" and a lost connection into
:class:`~killkrill.errors.ServiceUnavailable`.

:func:`delivery_floor` answers the question retention asks: the lowest entry ID of a stream
that may still be delivered to *any* consumer, so a record of an entry below it (the
metrics worker's exactly-once ledger) can never be needed again. Entry IDs are compared as
``(ms, seq)`` pairs (:data:`EntryId`), numerically, as Redis orders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from killkrill.errors import ServiceUnavailable

__all__ = [
    "EntryId",
    "GroupInfo",
    "PendingSummary",
    "StreamInfo",
    "delivery_floor",
    "floor_of",
    "format_id",
    "groups",
    "next_id",
    "parse_groups",
    "parse_id",
    "parse_pending_summary",
    "parse_stream_info",
    "pending_summary",
    "stream_info",
]

EntryId = tuple[int, int]
"""A stream entry ID ``<ms>-<seq>`` as ``(ms, seq)``: tuples order as Redis orders IDs."""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_id(value: bytes | str) -> EntryId:
    """``b"1700000000000-3"`` -> ``(1700000000000, 3)``; a bare ``<ms>`` means seq 0.

    Raises :class:`ValueError` for anything else."""
    text = _text(value)
    ms, sep, seq = text.partition("-")
    if not (text.isascii() and ms.isdigit() and (seq.isdigit() if sep else True)):
        raise ValueError(f"not a stream entry ID (<ms>-<seq>): {text!r}")
    return int(ms), int(seq or 0)


def format_id(entry_id: EntryId) -> str:
    """``(ms, seq)`` -> ``"<ms>-<seq>"``."""
    return f"{entry_id[0]}-{entry_id[1]}"


def next_id(entry_id: EntryId) -> EntryId:
    """The smallest ID after ``entry_id`` (the sequence never overflows in practice: it
    would take 2**64 entries in one millisecond)."""
    return entry_id[0], entry_id[1] + 1


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """XINFO STREAM, the part that says which IDs can still be read."""

    length: int
    """Entries in the stream now."""
    first_entry: EntryId | None
    """ID of the oldest entry still in the stream; None when it is empty."""
    last_generated: EntryId
    """The highest ID ever added: any later entry gets a higher one."""


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One consumer group, from XINFO GROUPS."""

    name: str
    last_delivered: EntryId
    """Entries after this one were never delivered to the group."""
    pending: int
    """Entries delivered and not yet acknowledged."""
    consumers: int
    lag: int | None
    """Entries not yet delivered (Redis >= 7; None when Redis cannot tell)."""


@dataclass(frozen=True, slots=True)
class PendingSummary:
    """XPENDING <stream> <group> (the summary form)."""

    count: int
    first: EntryId | None
    """Lowest pending ID; None when nothing is pending."""
    last: EntryId | None
    per_consumer: Mapping[str, int]


def parse_stream_info(reply: Mapping[str, Any]) -> StreamInfo:
    """redis-py's ``xinfo_stream`` answer -> :class:`StreamInfo`."""
    first = reply.get("first-entry")
    return StreamInfo(
        length=int(reply["length"]),
        first_entry=parse_id(first[0]) if first else None,
        last_generated=parse_id(reply["last-generated-id"]),
    )


def parse_groups(reply: Sequence[Mapping[str, Any]]) -> list[GroupInfo]:
    """redis-py's ``xinfo_groups`` answer -> one :class:`GroupInfo` per group."""
    out: list[GroupInfo] = []
    for group in reply:
        lag = group.get("lag")
        out.append(
            GroupInfo(
                name=_text(group["name"]),
                last_delivered=parse_id(group["last-delivered-id"]),
                pending=int(group["pending"]),
                consumers=int(group["consumers"]),
                lag=int(lag) if lag is not None else None,
            )
        )
    return out


def parse_pending_summary(reply: Mapping[str, Any]) -> PendingSummary:
    """redis-py's ``xpending`` answer -> :class:`PendingSummary`."""
    count = int(reply["pending"])
    low, high = reply.get("min"), reply.get("max")
    return PendingSummary(
        count=count,
        first=parse_id(low) if count and low is not None else None,
        last=parse_id(high) if count and high is not None else None,
        per_consumer={_text(c["name"]): int(c["pending"]) for c in reply.get("consumers") or ()},
    )


def _missing(exc: ResponseError) -> bool:
    """The stream (``no such key``) or the group (``NOGROUP``) does not exist."""
    text = str(exc)
    return "no such key" in text.lower() or "NOGROUP" in text


async def stream_info(client: aioredis.Redis, stream: str) -> StreamInfo | None:
    """XINFO STREAM of ``stream``; None when there is no such stream."""
    try:
        reply: Any = await client.xinfo_stream(stream)
    except ResponseError as exc:
        if _missing(exc):
            return None
        raise
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis unreachable reading {stream}: {exc}") from exc
    return parse_stream_info(reply)


async def groups(client: aioredis.Redis, stream: str) -> list[GroupInfo]:
    """Every consumer group of ``stream`` (none when there is no such stream)."""
    try:
        reply: Any = await client.xinfo_groups(stream)
    except ResponseError as exc:
        if _missing(exc):
            return []
        raise
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis unreachable reading {stream}: {exc}") from exc
    return parse_groups(reply)


async def pending_summary(client: aioredis.Redis, stream: str, group: str) -> PendingSummary:
    """XPENDING summary of ``group`` on ``stream`` (empty when either does not exist)."""
    try:
        reply: Any = await client.xpending(stream, group)
    except ResponseError as exc:
        if _missing(exc):
            return PendingSummary(0, None, None, {})
        raise
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis unreachable reading {stream}: {exc}") from exc
    return parse_pending_summary(reply)


def floor_of(
    stream: StreamInfo, group_infos: Sequence[GroupInfo], pending: Mapping[str, PendingSummary]
) -> EntryId:
    """The lowest ID any consumer may still be delivered (pure; see :func:`delivery_floor`)."""
    candidates = [stream.first_entry or next_id(stream.last_generated)]
    for group in group_infos:
        candidates.append(next_id(group.last_delivered))
        summary = pending.get(group.name)
        if summary is not None and summary.first is not None:
            candidates.append(summary.first)
    return min(candidates)


async def delivery_floor(client: aioredis.Redis, stream: str) -> EntryId | None:
    """The lowest entry ID of ``stream`` that may still be delivered to any consumer of any
    consumer group, present or future; None when the stream does not exist (nothing can be
    said about it, so a caller must not assume its entries are done).

    It is the lowest of: the oldest entry still in the stream (a group created later, or
    moved back with XGROUP SETID, could read it), or the ID after the last one generated
    when the stream is empty; for every group the entry after its last delivered one; and
    every group's lowest pending entry. Below it, every entry was acknowledged and deleted:
    no consumer can receive it again. The answer is read in several round trips; entries
    only ever move above it in between, so it is never too high.
    """
    info = await stream_info(client, stream)
    if info is None:
        return None
    group_infos = await groups(client, stream)
    pending = {
        g.name: await pending_summary(client, stream, g.name) for g in group_infos if g.pending
    }
    return floor_of(info, group_infos, pending)
