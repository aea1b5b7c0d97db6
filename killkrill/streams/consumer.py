"""Consumer groups: read, reclaim, acknowledge and dead-letter stream entries.

A worker reads through one group per (stream, worker kind) with a consumer name unique to
its process. Entries stay pending until :meth:`ConsumerGroup.ack` (the sink has them) or
:meth:`ConsumerGroup.dead_letter` (they can never succeed); both also XDEL the entry, so the
stream's length is its backlog. Pending entries of a consumer that died are taken over with
XAUTOCLAIM once idle for ``claim_idle_ms``; the cursor is carried between rounds.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from killkrill.errors import ServiceUnavailable
from killkrill.streams.names import DATA_FIELD, StreamNames

__all__ = ["ConsumerGroup", "Entry", "default_consumer_name"]


def default_consumer_name() -> str:
    """``<pod or host>-<pid>``: unique per process, stable for the process's life."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Entry:
    """One stream entry as delivered to this consumer."""

    stream: str
    id: str
    fields: dict[bytes, bytes] = field(repr=False)
    deliveries: int = 1
    """How many times the group has delivered it, this delivery included."""

    @property
    def data(self) -> bytes:
        """The ``data`` field (the JSON record), byte for byte; ``b""`` when absent."""
        return self.fields.get(DATA_FIELD.encode(), b"")


@dataclass
class ConsumerGroup:
    """One consumer of one group on one stream."""

    client: aioredis.Redis
    stream: str
    group: str
    consumer: str = field(default_factory=default_consumer_name)
    claim_idle_ms: int = 60_000
    """Pending entries idle this long (ms) are taken over from whichever consumer held them."""
    dead_letter_key: str | None = None
    """Where entries that can never succeed go; default ``<stream>:dead-letter``."""
    _claim_cursor: str = field(default="0-0", init=False)

    @property
    def dead_letter_stream(self) -> str:
        return self.dead_letter_key or StreamNames.dead_letter(self.stream)

    async def ensure(self) -> None:
        """Create the group (and the stream) if missing; an existing group is kept as is."""
        try:
            await self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        except RedisError as exc:
            raise ServiceUnavailable(
                f"Redis unreachable creating group {self.group}: {exc}"
            ) from exc

    async def read(self, count: int, block_ms: int | None = None) -> list[Entry]:
        """Up to ``count`` entries: first idle pending ones reclaimed from any consumer, then new.

        ``block_ms`` waits that long for new entries when none are there (None: do not wait).
        """
        try:
            entries = await self._reclaim(count)
            if len(entries) < count:
                reply: Any = await self.client.xreadgroup(
                    self.group,
                    self.consumer,
                    {self.stream: ">"},
                    count=count - len(entries),
                    block=block_ms if not entries else None,
                )
                for _stream, rows in reply or []:
                    entries.extend(
                        Entry(self.stream, _text(eid), fields)
                        for eid, fields in rows
                        if fields is not None
                    )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                await self.ensure()
                return await self.read(count, block_ms)
            raise
        except RedisError as exc:
            raise ServiceUnavailable(f"Redis unreachable reading {self.stream}: {exc}") from exc
        return entries

    async def _reclaim(self, count: int) -> list[Entry]:
        """XAUTOCLAIM idle pending entries, carrying the cursor across calls."""
        reply: Any = await self.client.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id=self._claim_cursor,
            count=count,
        )
        self._claim_cursor = _text(reply[0])
        claimed = [(_text(eid), fields) for eid, fields in reply[1] if fields is not None]
        deleted = [_text(eid) for eid in reply[2]] if len(reply) > 2 else []
        if deleted:  # pending entries whose payload is gone: nothing to deliver, clear them
            await self.client.xack(self.stream, self.group, *deleted)
        if not claimed:
            return []
        counts = await self._delivery_counts([eid for eid, _ in claimed])
        return [Entry(self.stream, eid, fields, counts.get(eid, 2)) for eid, fields in claimed]

    async def _delivery_counts(self, ids: Sequence[str]) -> dict[str, int]:
        rows: Any = await self.client.xpending_range(
            self.stream,
            self.group,
            min=ids[0],
            max=ids[-1],
            count=len(ids) * 4 + 10,
            consumername=self.consumer,
        )
        return {_text(row["message_id"]): int(row["times_delivered"]) for row in rows}

    async def pending(self) -> int:
        """Entries delivered to some consumer of the group and not yet acknowledged."""
        try:
            info: Any = await self.client.xpending(self.stream, self.group)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        return int(info["pending"])

    async def lag(self) -> int:
        """Entries not yet delivered to the group (Redis >= 7), or the stream length."""
        try:
            groups: Any = await self.client.xinfo_groups(self.stream)
        except ResponseError:
            return 0
        for group in groups:
            if _text(group["name"]) == self.group:
                lag = group.get("lag")
                return int(lag) if lag is not None else int(await self.client.xlen(self.stream))
        return int(await self.client.xlen(self.stream))

    async def ack(self, ids: Sequence[str]) -> None:
        """Acknowledge and delete ``ids``: call only once the sink has them durably."""
        if not ids:
            return
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xack(self.stream, self.group, *ids)
                pipe.xdel(self.stream, *ids)
                await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailable(
                f"Redis unreachable acknowledging on {self.stream}: {exc}"
            ) from exc

    async def dead_letter(
        self, entries: Sequence[tuple[Entry, str]], *, attempts: int, worker: str
    ) -> None:
        """Move each ``(entry, reason)`` to the dead-letter stream, atomically with its ack.

        The dead-letter entry keeps the original ``data`` byte for byte beside ``reason``,
        ``source_stream``, ``source_id``, ``attempts``, ``failed_at`` and ``worker``.
        """
        if not entries:
            return
        failed_at = f"{time.time():.3f}"
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                for entry, reason in entries:
                    letter: dict[Any, Any] = {
                        **entry.fields,
                        b"reason": reason.encode(),
                        b"source_stream": entry.stream.encode(),
                        b"source_id": entry.id.encode(),
                        b"group": self.group.encode(),
                        b"attempts": str(max(attempts, entry.deliveries)).encode(),
                        b"failed_at": failed_at.encode(),
                        b"worker": worker.encode(),
                    }
                    pipe.xadd(self.dead_letter_stream, letter)
                ids = [entry.id for entry, _ in entries]
                pipe.xack(self.stream, self.group, *ids)
                pipe.xdel(self.stream, *ids)
                await pipe.execute()
        except RedisError as exc:
            raise ServiceUnavailable(
                f"Redis unreachable dead-lettering on {self.stream}: {exc}"
            ) from exc
