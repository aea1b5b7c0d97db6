"""Worker heartbeats in Redis: which workers are alive, and when each last wrote to its sink.

Every few seconds (``consumer.heartbeat_seconds``) each worker process writes what it has
done into a hash of its own, ``<prefix>killkrill:worker:<kind>:<consumer>``, with a time
to live of six beats (:func:`ttl_of`): a worker that dies stops renewing it and its hash
expires, so the health check sees it gone. The hash names are also kept in a sorted set,
``<prefix>killkrill:workers``, scored by the time of the last beat, so readers find them
without scanning the key space.
A worker that stops cleanly removes its own entry at once (:func:`retire`).

The facts: kind (``log-worker``, ``metrics-worker``), consumer name, pipeline, the
streams it reads, its sink, when it started, when it last wrote something the sink
accepted (``last_success``), its last sink or Redis error with when, and counts since it
started (delivered, dead-lettered, left pending). :mod:`killkrill.health` turns them into
verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from killkrill.errors import ServiceUnavailable

__all__ = [
    "INTERVAL_SECONDS",
    "MAX_TTL_SECONDS",
    "Heartbeat",
    "WorkerActivity",
    "beat",
    "read_heartbeats",
    "registry_key",
    "retire",
    "run_heartbeat",
    "ttl_of",
]

INTERVAL_SECONDS = 5.0
"""Seconds between two beats of a worker (default of ``consumer.heartbeat_seconds``)."""

MAX_TTL_SECONDS = 360
"""The longest a heartbeat lives (six beats of the longest interval, 60 s): how far back
readers look in the registry; the hashes' own expiry says which are still alive."""


def ttl_of(interval: float) -> int:
    """Seconds a beat sent every ``interval`` seconds is believed: six missed beats."""
    return max(2, min(MAX_TTL_SECONDS, math.ceil(6 * interval)))


_MAX_ERROR_CHARS = 500


def registry_key(prefix: str) -> str:
    """The sorted set of the heartbeat hashes of a pipeline (``prefix``: its key prefix)."""
    return f"{prefix}killkrill:workers"


@dataclass
class WorkerActivity:
    """What one worker process has done, kept in memory and written by :func:`beat`."""

    kind: str
    consumer: str
    pipeline: str
    streams: Sequence[str]
    sink: str
    """``elasticsearch`` or ``postgres``."""
    prefix: str = ""
    """The pipeline's key prefix (see :class:`~killkrill.streams.names.StreamNames`)."""
    started_at: float = field(default_factory=time.time)
    last_success_at: float | None = None
    last_error_at: float | None = None
    last_error: str | None = None
    delivered: int = 0
    dead_lettered: int = 0
    left_pending: int = 0

    @property
    def key(self) -> str:
        return f"{self.prefix}killkrill:worker:{self.kind}:{self.consumer}"

    def succeeded(self, delivered: int) -> None:
        """The sink accepted ``delivered`` entries (0: nothing to say)."""
        if delivered:
            self.delivered += delivered
            self.last_success_at = time.time()

    def failed(self, reason: str) -> None:
        """A write or read failed for a reason that is not the records' (sink or Redis)."""
        self.last_error_at = time.time()
        self.last_error = reason[:_MAX_ERROR_CHARS]

    def fields(self) -> dict[str, str]:
        def stamp(value: float | None) -> str:
            return "" if value is None else f"{value:.3f}"

        return {
            "kind": self.kind,
            "consumer": self.consumer,
            "pipeline": self.pipeline,
            "streams": orjson.dumps(list(self.streams)).decode(),
            "sink": self.sink,
            "started_at": stamp(self.started_at),
            "updated_at": stamp(time.time()),
            "last_success_at": stamp(self.last_success_at),
            "last_error_at": stamp(self.last_error_at),
            "last_error": self.last_error or "",
            "delivered": str(self.delivered),
            "dead_lettered": str(self.dead_lettered),
            "left_pending": str(self.left_pending),
        }


@dataclass(frozen=True)
class Heartbeat:
    """One live worker, as its last beat described it."""

    kind: str
    consumer: str
    pipeline: str
    streams: tuple[str, ...]
    sink: str
    started_at: float
    updated_at: float
    last_success_at: float | None
    last_error_at: float | None
    last_error: str | None
    delivered: int
    dead_lettered: int
    left_pending: int

    @classmethod
    def from_fields(cls, raw: Mapping[Any, Any]) -> Heartbeat:
        f = {_text(k): _text(v) for k, v in raw.items()}

        def stamp(name: str) -> float | None:
            return float(f[name]) if f.get(name) else None

        return cls(
            kind=f.get("kind", ""),
            consumer=f.get("consumer", ""),
            pipeline=f.get("pipeline", ""),
            streams=tuple(orjson.loads(f.get("streams") or "[]")),
            sink=f.get("sink", ""),
            started_at=stamp("started_at") or 0.0,
            updated_at=stamp("updated_at") or 0.0,
            last_success_at=stamp("last_success_at"),
            last_error_at=stamp("last_error_at"),
            last_error=f.get("last_error") or None,
            delivered=int(f.get("delivered") or 0),
            dead_lettered=int(f.get("dead_lettered") or 0),
            left_pending=int(f.get("left_pending") or 0),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "consumer": self.consumer,
            "pipeline": self.pipeline,
            "streams": list(self.streams),
            "sink": self.sink,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "last_success_at": self.last_success_at,
            "last_error_at": self.last_error_at,
            "last_error": self.last_error,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "left_pending": self.left_pending,
        }


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def beat(
    client: aioredis.Redis, activity: WorkerActivity, ttl: int = ttl_of(INTERVAL_SECONDS)
) -> None:
    """Write ``activity`` as this worker's heartbeat, alive for ``ttl`` seconds."""
    now = time.time()
    registry = registry_key(activity.prefix)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(activity.key, mapping=activity.fields())  # type: ignore[arg-type]
        pipe.expire(activity.key, ttl)
        pipe.zadd(registry, {activity.key: now})
        pipe.zremrangebyscore(registry, "-inf", now - MAX_TTL_SECONDS)  # long gone
        await pipe.execute()


async def retire(client: aioredis.Redis, activity: WorkerActivity) -> None:
    """Remove the heartbeat of a worker that stops cleanly."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.delete(activity.key)
        pipe.zrem(registry_key(activity.prefix), activity.key)
        await pipe.execute()


async def read_heartbeats(client: aioredis.Redis, prefix: str) -> list[Heartbeat]:
    """Every live worker of the pipeline with key prefix ``prefix`` (its heartbeat hash not
    expired), sorted by kind and consumer."""
    try:
        keys: Any = await client.zrangebyscore(
            registry_key(prefix), time.time() - MAX_TTL_SECONDS, "+inf"
        )
        if not keys:
            return []
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            hashes: list[Any] = await pipe.execute()
    except RedisError as exc:
        raise ServiceUnavailable(f"Redis unreachable reading worker heartbeats: {exc}") from exc
    beats = [Heartbeat.from_fields(h) for h in hashes if h]
    return sorted(beats, key=lambda b: (b.kind, b.consumer))


async def run_heartbeat(
    client: aioredis.Redis,
    activity: WorkerActivity,
    stop: asyncio.Event,
    interval: float = INTERVAL_SECONDS,
) -> None:
    """Beat every ``interval`` seconds until ``stop``, then :func:`retire`. A beat that
    fails (Redis down) is skipped: the worker's health shows it once Redis answers."""
    ttl = ttl_of(interval)
    while not stop.is_set():
        with contextlib.suppress(RedisError, OSError):
            await beat(client, activity, ttl)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    with contextlib.suppress(RedisError, OSError):
        await retire(client, activity)
