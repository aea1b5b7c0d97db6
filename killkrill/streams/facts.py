"""What Redis says about one stream and the consumer group reading it, in one read.

:func:`stream_facts` gathers, for a stream and its group: the length, the group's lag
(entries never delivered), its pending entries and how old the oldest of them is, when
the oldest undelivered entry was added, its consumers with their pending counts and idle
times, the depth of the dead-letter stream and when its newest letter came, and when the
last entry was appended. The health verdicts (:mod:`killkrill.health`) and the workers'
own gauges both read them from here.

Ages come from entry IDs, whose first part is the time (ms) Redis added the entry, and
from Redis's own clock (``TIME``), so a skewed client clock does not distort them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from killkrill.errors import ServiceUnavailable
from killkrill.streams.info import EntryId, groups, parse_id, pending_summary, stream_info
from killkrill.streams.names import StreamNames

__all__ = ["ConsumerFacts", "StreamFacts", "redis_time", "stream_facts"]


@dataclass(frozen=True)
class ConsumerFacts:
    """One consumer of the group (XINFO CONSUMERS)."""

    name: str
    pending: int
    idle_seconds: float
    """Since the consumer last read or claimed (Redis's ``idle``)."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pending": self.pending, "idle_seconds": self.idle_seconds}


@dataclass(frozen=True)
class StreamFacts:
    """One stream and its consumer group (see the module doc)."""

    name: str
    """The stream key."""
    group: str
    exists: bool
    length: int = 0
    lag: int = 0
    """Entries not yet delivered to the group."""
    pending: int = 0
    """Entries delivered and not acknowledged."""
    oldest_pending_seconds: float = 0.0
    """Age of the oldest pending entry (0 when none)."""
    oldest_waiting_seconds: float = 0.0
    """Age of the oldest entry not yet delivered (0 when the lag is 0)."""
    dead_letters: int = 0
    newest_dead_letter_seconds: float | None = None
    """Age of the newest dead letter (None when there is none)."""
    newest_dead_letter_reason: str | None = None
    """Why the newest dead letter could not be written."""
    last_entry_seconds: float | None = None
    """Since the last entry was appended (None: never)."""
    consumers: list[ConsumerFacts] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "exists": self.exists,
            "length": self.length,
            "lag": self.lag,
            "pending": self.pending,
            "oldest_pending_seconds": round(self.oldest_pending_seconds, 3),
            "oldest_waiting_seconds": round(self.oldest_waiting_seconds, 3),
            "dead_letters": self.dead_letters,
            "newest_dead_letter_seconds": _round(self.newest_dead_letter_seconds),
            "newest_dead_letter_reason": self.newest_dead_letter_reason,
            "last_entry_seconds": _round(self.last_entry_seconds),
            "consumers": [c.as_dict() for c in self.consumers],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _age(now_ms: int, entry: EntryId) -> float:
    return max(0.0, (now_ms - entry[0]) / 1000)


async def redis_time(client: aioredis.Redis) -> int:
    """Redis's clock in milliseconds (``TIME``)."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def stream_facts(client: aioredis.Redis, stream: str, group: str) -> StreamFacts:
    """The facts of ``stream`` read by ``group``; raises
    :class:`~killkrill.errors.ServiceUnavailable` when Redis does not answer. A stream (or
    group) that does not exist yet reads as empty, with ``exists`` false."""
    try:
        now = await redis_time(client)
        info = await stream_info(client, stream)
        dead_key = StreamNames.dead_letter(stream)
        dead_letters = int(await client.xlen(dead_key))
        newest_letter: Any = await client.xrevrange(dead_key, count=1) if dead_letters else []
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis unreachable reading {stream}: {exc}") from exc
    newest_dead, newest_reason = None, None
    if newest_letter:
        newest_dead = _age(now, parse_id(newest_letter[0][0]))
        reason = newest_letter[0][1].get(b"reason")
        newest_reason = reason.decode("utf-8", "replace") if reason is not None else None
    empty = StreamFacts(
        stream,
        group,
        False,
        dead_letters=dead_letters,
        newest_dead_letter_seconds=newest_dead,
        newest_dead_letter_reason=newest_reason,
    )
    if info is None:
        return empty
    mine = next((g for g in await groups(client, stream) if g.name == group), None)
    last_entry = None if info.last_generated == (0, 0) else _age(now, info.last_generated)
    if mine is None:  # no worker has read it yet: everything is waiting
        oldest = _age(now, info.first_entry) if info.first_entry else 0.0
        return replace(
            empty,
            exists=True,
            length=info.length,
            lag=info.length,
            oldest_waiting_seconds=oldest,
            last_entry_seconds=last_entry,
        )
    summary = await pending_summary(client, stream, group)
    lag = mine.lag if mine.lag is not None else max(0, info.length - mine.pending)
    waiting = await _oldest_waiting(client, stream, mine.last_delivered) if lag else None
    return replace(
        empty,
        exists=True,
        length=info.length,
        lag=lag,
        pending=summary.count,
        oldest_pending_seconds=_age(now, summary.first) if summary.first else 0.0,
        oldest_waiting_seconds=_age(now, waiting) if waiting else 0.0,
        last_entry_seconds=last_entry,
        consumers=await _consumers(client, stream, group),
    )


async def _oldest_waiting(
    client: aioredis.Redis, stream: str, last_delivered: EntryId
) -> EntryId | None:
    """The first entry after ``last_delivered`` (the oldest the group has not read)."""
    start = f"({last_delivered[0]}-{last_delivered[1]}"
    try:
        rows: Any = await client.xrange(stream, min=start, count=1)
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis unreachable reading {stream}: {exc}") from exc
    return parse_id(rows[0][0]) if rows else None


async def _consumers(client: aioredis.Redis, stream: str, group: str) -> list[ConsumerFacts]:
    try:
        rows: Any = await client.xinfo_consumers(stream, group)
    except ResponseError:
        return []
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis unreachable reading {stream}: {exc}") from exc
    out = []
    for row in rows:
        name = row["name"]
        out.append(
            ConsumerFacts(
                name=name.decode() if isinstance(name, bytes) else str(name),
                pending=int(row["pending"]),
                idle_seconds=int(row["idle"]) / 1000,
            )
        )
    return sorted(out, key=lambda c: c.name)
