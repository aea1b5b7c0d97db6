"""Consumer groups: read, reclaim, acknowledge and dead-letter stream entries.

A worker reads through one group per (stream, worker kind) with a consumer name unique to
its process. Entries stay pending until :meth:`ConsumerGroup.ack` (the sink has them) or
:meth:`ConsumerGroup.dead_letter` (they can never succeed); both also XDEL the entry, so the
stream's length is its backlog. Pending entries of a consumer that died are taken over with
XAUTOCLAIM once idle for ``claim_idle_ms``; the cursor is carried between rounds, and a scan
that found nothing is repeated only after ``reclaim_interval_ms`` (not on every read).

Redis counts every delivery. A delivery that ended in a transient verdict (the sink was
slow or down) is handed back with :meth:`ConsumerGroup.give_back`, so ``max_deliveries``
counts only deliveries that ended otherwise - a worker that crashed on the entry, say - and
an outage, however long, never pushes good entries into the dead-letter stream.

The hot commands (XREADGROUP, XACK + XDEL) are sent pre-packed and their replies read raw
(:mod:`killkrill.streams.resp`): redis-py's per-argument packing and reply callbacks were
most of the client's CPU per entry.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from killkrill.errors import DeadLetterFull, ServiceUnavailable
from killkrill.streams.dead_letter import move_to_dead_letters
from killkrill.streams.names import DATA_FIELD, StreamNames, origin_of
from killkrill.streams.resp import bulk_strings, execute_packed, pack_command, pack_with

__all__ = ["ConsumerGroup", "Entry", "default_consumer_name"]

log = logging.getLogger("killkrill.streams")


def default_consumer_name() -> str:
    """``<pod or host>-<pid>``: unique per process, stable for the process's life."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{os.getpid()}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


_DATA = DATA_FIELD.encode()
_MULTI = pack_command("MULTI")
_EXEC = pack_command("EXEC")
_MAX_RECLAIM_INTERVAL_MS = 5_000

_GIVE_BACK = """
local n = 0
for i = 3, #ARGV do
    local row = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)[1]
    if row and row[2] == ARGV[2] then
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i],
            'IDLE', row[3], 'RETRYCOUNT', math.max(tonumber(row[4]) - 1, 0), 'JUSTID')
        n = n + 1
    end
end
return n
"""
"""For each entry ID still pending for this consumer: one delivery less, idle time kept."""


@dataclass(slots=True)
class Entry:
    """One stream entry as delivered to this consumer. Treat it as read-only (it is not a
    frozen dataclass only because building one per entry is on the hot path)."""

    stream: str
    id: str
    fields: dict[bytes, bytes] = field(repr=False)
    deliveries: int = 1
    """How many times the group has delivered it, this delivery included."""

    @property
    def data(self) -> bytes:
        """The ``data`` field (the JSON record), byte for byte; ``b""`` when absent."""
        return self.fields.get(_DATA, b"")

    @property
    def identity(self) -> tuple[str, str]:
        """``(stream, entry id)`` where the record first entered the pipeline: for an entry
        replayed from a dead-letter stream, its first entry's (kept through every replay);
        for any other entry, its own. Sinks key idempotent writes by it (the Elasticsearch
        ``_id``, the metrics ledger); acknowledging always uses :attr:`id`. See
        :func:`~killkrill.streams.names.origin_of`."""
        return origin_of(self.fields, self.stream, self.id)


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
    reclaim_interval_ms: int | None = None
    """Least time (ms) between two XAUTOCLAIM scans when the last one found nothing idle;
    default half of ``claim_idle_ms``, at most 5 s. A scan that claimed entries, or stopped
    part-way through a long pending list, is continued on the next read."""
    max_dead_letters: int | None = None
    """Most entries the dead-letter stream may hold (None: no bound); see
    :meth:`dead_letter`."""
    on_dead_letter_refused: Callable[[int], object] | None = field(default=None, repr=False)
    """Told how many entries :meth:`dead_letter` could not move for lack of room (a metric)."""
    _claim_cursor: str = field(default="0-0", init=False)
    _next_reclaim: float = field(default=0.0, init=False)
    _dead_letter_blocked: bool = field(default=False, init=False)
    _in_flight: set[str] = field(default_factory=set, init=False, repr=False)
    """Entries read by this object and not yet acked, dead-lettered or handed back."""
    _recover: bool = field(default=False, init=False)
    """A read failed after it may have been delivered entries: look for them first."""
    _recovering: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

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

        ``block_ms`` waits that long for new entries when none are there (None or 0: do not
        wait). While entries wait for room in a full dead-letter stream (see
        :meth:`dead_letter`), raises :class:`~killkrill.errors.DeadLetterFull` instead.
        """
        if self._dead_letter_blocked and (problem := await self.dead_letter_problem()):
            raise DeadLetterFull(problem)
        try:
            entries = await self._recover_lost(count) if self._recover else []
            if not entries and self._reclaim_due():
                entries = await self._reclaim(count)
            if len(entries) < count:
                entries.extend(
                    await self._read_new(count - len(entries), None if entries else block_ms)
                )
        except ResponseError as exc:
            text = str(exc)
            if "NOGROUP" in text:  # the group (or the stream) was deleted: recreate, read
                await self.ensure()
                return await self.read(count, block_ms)
            if text.startswith("UNBLOCKED"):  # the stream was deleted while we waited
                await self.ensure()
                return []
            raise
        except RedisError as exc:
            # Redis may have delivered entries to the read that failed: find them next time.
            self._recover = True
            raise ServiceUnavailable(f"Redis unreachable reading {self.stream}: {exc}") from exc
        self._in_flight.update(entry.id for entry in entries)
        return entries

    async def _recover_lost(self, count: int) -> list[Entry]:
        """Entries delivered to this consumer by a read that failed (a timeout after Redis
        answered, a lost connection): pending for it, yet in no batch of its. They are taken
        again at once (XCLAIM, their delivery count kept: the lost delivery stands for this
        one) instead of waiting ``claim_idle_ms`` for XAUTOCLAIM."""
        async with self._recovering:  # lanes share this consumer: one looks at a time
            if not self._recover:
                return []
            limit = count + len(self._in_flight)
            rows: Any = await self.client.xpending_range(
                self.stream, self.group, "-", "+", limit, self.consumer
            )
            lost = [r for r in rows if _text(r["message_id"]) not in self._in_flight][:count]
            if len(rows) < limit and len(lost) < count:
                self._recover = False  # the whole pending list seen: every lost entry found
            if not lost:
                return []
            async with self.client.pipeline(transaction=False) as pipe:
                for row in lost:
                    pipe.xclaim(
                        self.stream,
                        self.group,
                        self.consumer,
                        0,
                        [row["message_id"]],
                        retrycount=int(row["times_delivered"]),
                    )
                replies: Any = await pipe.execute()
            entries = []
            for row, claimed in zip(lost, replies, strict=True):
                for entry_id, fields in claimed:
                    if fields is not None:
                        entries.append(
                            Entry(self.stream, _text(entry_id), fields, int(row["times_delivered"]))
                        )
            self._in_flight.update(entry.id for entry in entries)  # before another lane looks
            return entries

    async def _read_new(self, count: int, block_ms: int | None) -> list[Entry]:
        """XREADGROUP ``>``: entries never delivered to the group."""
        args: list[bytes | str | int] = ["XREADGROUP", "GROUP", self.group, self.consumer]
        args += ["COUNT", count]
        if block_ms:
            args += ["BLOCK", block_ms]
        args += ["STREAMS", self.stream, ">"]
        [reply] = await execute_packed(self.client, pack_command(*args), 1)
        if not reply:  # nil: nothing new (after BLOCK), or an empty stream
            return []
        # RESP3: {stream: rows}; RESP2: [[stream, rows]]. One stream was asked for.
        rows: Any = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]
        stream = self.stream
        entries: list[Entry] = []
        append = entries.append
        for entry_id, flat in rows:
            if flat is None:  # deleted while pending (not for ">", but be safe)
                continue
            if type(flat) is list and len(flat) == 4:  # data + v: the usual entry
                fields = {flat[0]: flat[1], flat[2]: flat[3]}
            elif isinstance(flat, dict):
                fields = flat
            else:
                pairs = iter(flat)
                fields = dict(zip(pairs, pairs, strict=False))
            append(Entry(stream, entry_id.decode(), fields))
        return entries

    def _reclaim_due(self) -> bool:
        return time.monotonic() >= self._next_reclaim

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
        if claimed or self._claim_cursor != "0-0":
            self._next_reclaim = 0.0  # there may be more: look again on the next read
        else:
            interval = self.reclaim_interval_ms
            if interval is None:
                interval = min(self.claim_idle_ms // 2, _MAX_RECLAIM_INTERVAL_MS)
            self._next_reclaim = time.monotonic() + interval / 1000
        if deleted:  # pending entries whose payload is gone: nothing to deliver, clear them
            await self.client.xack(self.stream, self.group, *deleted)
        if not claimed:
            return []
        counts = await self._delivery_counts([eid for eid, _ in claimed])
        return [Entry(self.stream, eid, fields, counts.get(eid, 2)) for eid, fields in claimed]

    async def _delivery_counts(self, ids: Sequence[str]) -> dict[str, int]:
        """Exact delivery counts of ``ids`` (one XPENDING per ID, in one round trip: entries
        are reclaimed rarely, and a range query could miss some among this consumer's
        other pending entries, which would hide a poison entry from ``max_deliveries``)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
            replies: Any = await pipe.execute()
        return {
            _text(row["message_id"]): int(row["times_delivered"])
            for rows in replies
            for row in rows
        }

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
        packed_ids = bulk_strings(ids)
        packed = b"".join(
            (
                _MULTI,
                pack_with(("XACK", self.stream, self.group), packed_ids, len(ids)),
                pack_with(("XDEL", self.stream), packed_ids, len(ids)),
                _EXEC,
            )
        )
        try:
            replies = await execute_packed(self.client, packed, 4)
            for reply in replies[-1] or ():  # EXEC's array: one reply per queued command
                if isinstance(reply, ResponseError):
                    raise reply
        except RedisError as exc:
            raise ServiceUnavailable(
                f"Redis unreachable acknowledging on {self.stream}: {exc}"
            ) from exc
        self._in_flight.difference_update(ids)

    async def give_back(self, ids: Sequence[str]) -> int:
        """Uncount this delivery of ``ids``: their write ended in a transient verdict (the
        sink was slow or unavailable), which says nothing about the entries themselves.
        They stay pending, idle as they were, and are reclaimed as usual. Entries no longer
        pending for this consumer (acked, or taken over meanwhile) are left alone. Returns
        how many were given back."""
        if not ids:
            return 0
        try:
            given: Any = await self.client.eval(
                _GIVE_BACK, 1, self.stream, self.group, self.consumer, *ids
            )
        except RedisError as exc:
            raise ServiceUnavailable(
                f"Redis unreachable handing back deliveries on {self.stream}: {exc}"
            ) from exc
        self._in_flight.difference_update(ids)
        return int(given)

    async def dead_letter(
        self, entries: Sequence[tuple[Entry, str]], *, attempts: int, worker: str
    ) -> None:
        """Move each ``(entry, reason)`` to the dead-letter stream, atomically with its ack.

        The dead-letter entry keeps the original fields (``data`` byte for byte) beside
        ``reason``, ``source_stream``, ``source_id``, ``attempts``, ``failed_at`` and
        ``worker``.

        With :attr:`max_dead_letters` set, only what fits under it is moved (in order); the
        rest stay pending on the stream, counted (``on_dead_letter_refused``), logged as an
        error, and :class:`~killkrill.errors.DeadLetterFull` is raised: the worker then
        waits (see :meth:`dead_letter_problem`) instead of reading on, and the pipeline
        backs up until the dead letters are replayed or purged. Nothing is trimmed.
        """
        if not entries:
            return
        failed_at = f"{time.time():.3f}".encode()
        common = {
            b"group": self.group.encode(),
            b"failed_at": failed_at,
            b"worker": worker.encode(),
        }
        letters = [
            (
                entry.id,
                {
                    **entry.fields,
                    b"reason": reason.encode(),
                    b"source_stream": entry.stream.encode(),
                    b"source_id": entry.id.encode(),
                    b"attempts": str(max(attempts, entry.deliveries)).encode(),
                    **common,
                },
            )
            for entry, reason in entries
        ]
        try:
            moved = await move_to_dead_letters(
                self.client,
                self.stream,
                self.group,
                self.dead_letter_stream,
                letters,
                bound=self.max_dead_letters,
            )
        except RedisError as exc:
            raise ServiceUnavailable(
                f"Redis unreachable dead-lettering on {self.stream}: {exc}"
            ) from exc
        self._in_flight.difference_update(entry_id for entry_id, _ in letters[:moved])
        refused = len(letters) - moved
        if refused:
            self._dead_letter_blocked = True
            if self.on_dead_letter_refused is not None:
                self.on_dead_letter_refused(refused)
            message = (
                f"dead-letter stream {self.dead_letter_stream} is full "
                f"(consumer.max_dead_letters={self.max_dead_letters}): {refused} entr"
                f"{'y' if refused == 1 else 'ies'} of {self.stream} could not be dead-lettered "
                f"and stay pending; reading {self.stream} stops until the dead letters are "
                f"replayed or purged (killkrill dlq list|replay|purge)"
            )
            log.error(
                message,
                extra={
                    "stream": self.stream,
                    "dead_letter_stream": self.dead_letter_stream,
                    "refused": refused,
                    "max_dead_letters": self.max_dead_letters,
                },
            )
            raise DeadLetterFull(message)

    async def dead_letter_problem(self) -> str | None:
        """Why this consumer cannot go on, or None: once :meth:`dead_letter` found the
        dead-letter stream full, until it has room again (readiness probes ask; so does
        :meth:`read`, which reads nothing meanwhile)."""
        if not self._dead_letter_blocked or self.max_dead_letters is None:
            return None
        try:
            depth = int(await self.client.xlen(self.dead_letter_stream))
        except RedisError as exc:
            raise ServiceUnavailable(
                f"Redis unreachable reading {self.dead_letter_stream}: {exc}"
            ) from exc
        if depth < self.max_dead_letters:
            self._dead_letter_blocked = False
            log.info(
                "dead-letter stream has room again; reading resumes",
                extra={"dead_letter_stream": self.dead_letter_stream, "depth": depth},
            )
            return None
        return (
            f"dead-letter stream {self.dead_letter_stream} is full ({depth} of "
            f"{self.max_dead_letters}): entries wait to be dead-lettered and {self.stream} "
            "is not read; replay or purge dead letters (killkrill dlq)"
        )
