"""Retention of the metrics tables, for the worker's schedule and ``killkrill db prune``.

One round, :func:`prune`, deletes in one transaction:

* buckets that ended longer ago than the retention age, and the series left without any;
* ledger rows (``metric_applied_entries``) of entries that no consumer can be delivered
  again: below the stream's :func:`~killkrill.streams.info.delivery_floor`, which looks at
  *every* consumer group of the stream and at the entries still in it, and below the first
  identity a letter of its dead-letter stream carries (a replay brings that identity back).
  A row of an entry still pending anywhere (a consumer that died after COMMIT and before
  XACK, a group that has not read it yet) or waiting in the dead-letter stream is kept, so
  its redelivery finds it and changes nothing. A stream Redis does not have is reported and
  its rows are kept: nothing can be said about it (a wrong Redis URL must not wipe the
  ledger).

The delivery state is read from Redis before the transaction starts; it only moves forward
in between, so the bounds are never too high.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from killkrill.db.retention import PruneResult, ledger_streams, prune_aggregates, prune_ledger
from killkrill.errors import ServiceUnavailable
from killkrill.streams.dead_letter import lowest_origin_ids
from killkrill.streams.info import EntryId, delivery_floor
from killkrill.streams.names import StreamNames
from killkrill.workers.base import sleep_or_stop

__all__ = ["RetentionReport", "ledger_floors", "prune", "prune_periodically"]

log = logging.getLogger("killkrill.workers.metrics")


@dataclass(frozen=True)
class RetentionReport:
    """What one :func:`prune` round did and why."""

    result: PruneResult
    floors: dict[str, EntryId] = field(default_factory=dict)
    """Per stream, the lowest entry ID still deliverable: ledger rows below it could go."""
    unknown_streams: list[str] = field(default_factory=list)
    """Streams of the ledger that Redis does not have: their rows were kept."""


async def ledger_floors(
    client: aioredis.Redis, streams: Sequence[str]
) -> tuple[dict[str, EntryId], list[str]]:
    """The delivery floor of each of ``streams`` (lowered to the first identity its
    dead-letter stream may replay), and the streams Redis does not have.

    Raises :class:`~killkrill.errors.ServiceUnavailable` when Redis does not answer."""
    floors: dict[str, EntryId] = {}
    unknown: list[str] = []
    for stream in streams:
        floor = await delivery_floor(client, stream)
        if floor is None:
            unknown.append(stream)
            continue
        try:
            held = await lowest_origin_ids(client, StreamNames.dead_letter(stream))
        except RedisError as exc:
            raise ServiceUnavailable(f"Redis unreachable reading dead letters: {exc}") from exc
        floors[stream] = min(floor, held[stream]) if stream in held else floor
    return floors, unknown


def _prune_tables(
    engine: Engine,
    max_age_seconds: float,
    floors: dict[str, EntryId],
    ledger_older_than_seconds: float | None,
    pipeline: str | None,
) -> PruneResult:
    with engine.begin() as conn:
        agg = prune_aggregates(conn, max_age_seconds, pipeline=pipeline)
        ledger = sum(
            prune_ledger(conn, stream, floor, older_than_seconds=ledger_older_than_seconds)
            for stream, floor in sorted(floors.items())
        )
    return PruneResult(agg.buckets, agg.series, ledger)


def _ledger_streams(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return ledger_streams(conn)


async def prune(
    engine: Engine,
    client: aioredis.Redis,
    *,
    max_age_seconds: float,
    streams: Sequence[str] | None = None,
    ledger_older_than_seconds: float | None = None,
    pipeline: str | None = None,
) -> RetentionReport:
    """One retention round (see module doc); the SQL runs in a thread.

    ``streams`` are the stream keys whose ledger rows may go (None: every stream the ledger
    holds rows of). With ``ledger_older_than_seconds``, a ledger row must also be that old
    (by the time in its entry ID) to go. Raises
    :class:`~killkrill.errors.ServiceUnavailable` when Redis does not answer (then nothing
    is deleted). Aggregates are pruned for ``pipeline`` only (None: every pipeline).
    """
    if streams is None:
        streams = await asyncio.to_thread(_ledger_streams, engine)
    floors, unknown = await ledger_floors(client, streams)
    result = await asyncio.to_thread(
        _prune_tables, engine, max_age_seconds, floors, ledger_older_than_seconds, pipeline
    )
    return RetentionReport(result, floors, unknown)


async def prune_periodically(
    prune_once: Callable[[], Awaitable[RetentionReport]],
    stop: asyncio.Event,
    interval_seconds: float,
) -> None:
    """Call ``prune_once`` every ``interval_seconds`` until ``stop`` is set. Pruning is
    housekeeping: a failed round is logged and tried again next time."""
    while not stop.is_set():
        try:
            report = await prune_once()
        except Exception as exc:
            log.warning("pruning failed: %s", exc)
        else:
            log.info(
                "pruned",
                extra={
                    "buckets": report.result.buckets,
                    "series": report.result.series,
                    "ledger": report.result.ledger,
                    "streams_unknown_to_redis": report.unknown_streams,
                },
            )
        await sleep_or_stop(stop, interval_seconds)
