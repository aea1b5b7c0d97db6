"""The one path from every receiver to Redis: append a batch to its stream, or push back.

Wraps :func:`killkrill.streams.append_records` with the pipeline's stream names, the
backlog limit and the write-latency metric, so the HTTP and syslog receivers share exactly
the same behaviour: a batch is either wholly durable in Redis or raises
:class:`~killkrill.errors.Backpressure` / :class:`~killkrill.errors.ServiceUnavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from killkrill.config import BackpressureSettings
from killkrill.errors import Backpressure, ServiceUnavailable
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.streams import StreamNames, append_records, stream_backlog

__all__ = ["Kind", "StreamSink", "retry_after_header"]

Kind = Literal["logs", "metrics"]


class StreamSink:
    """Appends validated payloads to the logs or metrics stream of one pipeline."""

    def __init__(
        self,
        client: aioredis.Redis,
        names: StreamNames,
        backpressure: BackpressureSettings,
        metrics: ReceiverMetrics,
        *,
        fsync_timeout: float | None = None,
    ) -> None:
        self.client = client
        self.fsync_timeout = fsync_timeout
        """With ``durability: fsync``: seconds an append waits for Redis's AOF fsync."""
        self.names = names
        self.backpressure = backpressure
        self.metrics = metrics
        self._latency = {
            kind: metrics.redis_write_seconds.labels(kind=kind) for kind in ("logs", "metrics")
        }

    def stream_for(self, kind: Kind, name: str | None = None) -> str:
        """The stream key of ``kind``; ``name`` picks a named metric stream."""
        if kind == "logs":
            return self.names.logs
        return self.names.named(name) if name else self.names.metrics

    async def append(
        self, kind: Kind, payloads: Sequence[bytes], *, stream: str | None = None
    ) -> list[bytes]:
        """Append ``payloads``; return their entry IDs once Redis has them all."""
        start = time.perf_counter()
        ids = await append_records(
            self.client,
            stream or self.stream_for(kind),
            payloads,
            max_backlog=self.backpressure.max_backlog,
            retry_after=self.backpressure.retry_after,
            fsync_timeout=self.fsync_timeout,
        )
        self._latency[kind].observe(time.perf_counter() - start)
        return ids

    async def check_ready(self) -> dict[str, str]:
        """Problems that make the receiver unready, by dependency (empty when ready)."""
        problems: dict[str, str] = {}
        try:
            await self.client.ping()
        except RedisError as exc:
            return {"redis": f"unreachable: {exc}"}
        for stream in (self.names.logs, self.names.metrics):
            try:
                backlog = await stream_backlog(self.client, stream)
            except ServiceUnavailable as exc:
                problems[stream] = str(exc)
                continue
            if backlog >= self.backpressure.max_backlog:
                problems[stream] = (
                    f"backlog {backlog} is at its limit {self.backpressure.max_backlog}"
                )
        return problems


def retry_after_header(exc: Backpressure | ServiceUnavailable) -> str:
    """``Retry-After`` in whole seconds (at least 1), as HTTP wants it."""
    return str(max(1, round(exc.delay)))
