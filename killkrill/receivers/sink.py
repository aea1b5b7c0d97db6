"""The one path from every receiver to Redis: append a batch to a declared stream, or push
back.

Wraps :func:`killkrill.streams.append_records` with the pipeline's declared streams, the
backlog limit and the write-latency metric, so the HTTP and syslog receivers share exactly
the same behaviour: a batch is either wholly durable in Redis or raises
:class:`~killkrill.errors.Backpressure` (nothing written) /
:class:`~killkrill.errors.ServiceUnavailable` (unknown). Only the streams the settings
declare can be written, each only by its own kind (:meth:`StreamSink.resolve`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from killkrill.config import BackpressureSettings, ReceiverSettings
from killkrill.config.receivers import LOG_STREAM
from killkrill.errors import Backpressure, ServiceUnavailable
from killkrill.receivers.errors import PartialAppend, RequestError
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.streams import StreamNames, append_records, stream_backlog, stream_names
from killkrill.streams.append import CHUNK

__all__ = ["Kind", "Readiness", "Stream", "StreamSink", "retry_after_header"]

Kind = Literal["logs", "metrics"]


@dataclass(frozen=True, slots=True)
class Stream:
    """A declared stream: its name in the settings, its Redis key and what it holds."""

    name: str
    key: str
    kind: Kind


@dataclass(slots=True)
class Readiness:
    """What ``/readyz`` reports: ready while Redis answers. A full backlog does not make a
    receiver unready (it keeps answering 429 with Retry-After, which is what clients need);
    it is reported here and in ``killkrill_receiver_stream_backlog_entries``."""

    ready: bool
    problems: dict[str, str] = field(default_factory=dict)
    backlogs: dict[str, int] = field(default_factory=dict)
    limit: int = 0

    def full(self) -> list[str]:
        """Streams whose backlog is at its limit (clients get 429 until a worker drains)."""
        return [key for key, backlog in self.backlogs.items() if backlog >= self.limit]

    def to_json(self) -> bytes:
        body: dict[str, object] = {"status": "ready" if self.ready else "unready"}
        if self.problems:
            body["problems"] = self.problems
        if self.backlogs:
            body["streams"] = {
                key: {"backlog": backlog, "limit": self.limit, "full": backlog >= self.limit}
                for key, backlog in self.backlogs.items()
            }
        return orjson.dumps(body)

    def to_text(self) -> str:
        parts = ["ready" if self.ready else "unready"]
        parts += [f"{what}: {problem}" for what, problem in self.problems.items()]
        for key, backlog in self.backlogs.items():
            note = " (full: clients get 429 until it drains)" if backlog >= self.limit else ""
            parts.append(f"{key} backlog {backlog} of {self.limit}{note}")
        return "; ".join(parts)


class StreamSink:
    """Appends validated payloads to the declared streams of one pipeline."""

    def __init__(
        self,
        client: aioredis.Redis,
        names: StreamNames,
        declared: Sequence[str],
        backpressure: BackpressureSettings,
        metrics: ReceiverMetrics,
        *,
        fsync_timeout: float | None = None,
        log_stream: str = LOG_STREAM,
        default_metric_stream: str = "metrics",
    ) -> None:
        self.client = client
        self.defaults: dict[Kind, str] = {"logs": log_stream, "metrics": default_metric_stream}
        """The stream of each kind written without ``?stream=``."""
        self.fsync_timeout = fsync_timeout
        """With ``durability: fsync``: seconds an append waits for Redis's AOF fsync."""
        self.names = names
        self.backpressure = backpressure
        self.metrics = metrics
        self.streams: dict[str, Stream] = {
            name: Stream(name, names.named(name), "logs" if name == log_stream else "metrics")
            for name in declared
        }
        self._latency = {
            kind: metrics.redis_write_seconds.labels(kind=kind) for kind in ("logs", "metrics")
        }
        self._backlog = {s.key: metrics.stream_backlog.labels(stream=s.key) for s in self}
        metrics.stream_backlog_limit.set(backpressure.max_backlog)

    @classmethod
    def from_settings(
        cls, client: aioredis.Redis, settings: ReceiverSettings, metrics: ReceiverMetrics
    ) -> StreamSink:
        """The sink of a receiver process: its pipeline's declared streams, backlog limit and
        durability."""
        return cls(
            client,
            stream_names(settings.pipeline, settings.redis.key_prefix),
            settings.streams,
            settings.backpressure,
            metrics,
            fsync_timeout=settings.append_fsync_timeout,
            log_stream=settings.log_stream,
            default_metric_stream=settings.default_metric_stream,
        )

    def __iter__(self) -> Iterator[Stream]:
        return iter(self.streams.values())

    def declared(self, kind: Kind) -> list[str]:
        """Names of the declared streams of ``kind``."""
        return [s.name for s in self if s.kind == kind]

    def resolve(self, kind: Kind, name: str | None = None) -> Stream:
        """The declared stream ``name`` (default: the stream named after ``kind``), which must
        hold ``kind``; else :class:`RequestError` (400) listing the declared ones."""
        wanted = name if name is not None else self.defaults[kind]
        stream = self.streams.get(wanted)
        if stream is not None and stream.kind == kind:
            return stream
        shown = repr(wanted if len(wanted) <= 100 else wanted[:100] + "...")
        declared = ", ".join(self.declared(kind)) or "none"
        if stream is not None:  # a stream of the other kind
            where = "/api/v1/logs" if stream.kind == "logs" else "/api/v1/metrics"
            reason = f"stream {shown} holds {stream.kind}; post them to {where}"
        elif name is None:
            reason = f"the default {kind} stream is not declared; name one with ?stream="
        else:
            reason = f"stream {shown} is not declared"
        raise RequestError(
            400,
            "undeclared_stream",
            f"{reason}. Declared {kind} streams: {declared} (setting `streams`)",
            field="stream",
            limit="streams",
        )

    async def append(
        self, stream: Stream, payloads: Sequence[bytes], *, part: int | None = None
    ) -> list[bytes]:
        """Append ``payloads`` to ``stream``; return their entry IDs once Redis has them all.

        At most ``part`` payloads (default and most: one atomic append) are written at a
        time. Only the first part checks the backlog (counting the whole batch), so
        :class:`Backpressure` always means nothing was written; a later part failing raises
        :class:`~killkrill.receivers.errors.PartialAppend` saying how many are durable.
        """
        size = min(part or CHUNK, CHUNK)
        start = time.perf_counter()
        ids: list[bytes] = []
        for first in range(0, len(payloads), size):
            try:
                ids += await append_records(
                    self.client,
                    stream.key,
                    payloads[first : first + size],
                    max_backlog=self.backpressure.max_backlog if first == 0 else None,
                    retry_after=self.backpressure.retry_after,
                    incoming=len(payloads),
                    fsync_timeout=self.fsync_timeout,
                )
            except ServiceUnavailable as exc:
                if not ids:
                    raise
                raise PartialAppend(
                    f"{exc} after {len(ids)} of {len(payloads)} records were appended",
                    written=len(ids),
                    total=len(payloads),
                    delay=exc.delay,
                ) from exc
            except Backpressure:
                self._backlog[stream.key].set(self.backpressure.max_backlog)
                raise
        self._latency[stream.kind].observe(time.perf_counter() - start)
        return ids

    async def check_ready(self) -> Readiness:
        """Redis reachable (ready), and every declared stream's backlog (reported)."""
        limit = self.backpressure.max_backlog
        try:
            await self.client.ping()
        except RedisError as exc:
            return Readiness(False, {"redis": f"unreachable: {exc}"}, limit=limit)
        report = Readiness(True, limit=limit)
        for stream in self:
            try:
                backlog = await stream_backlog(self.client, stream.key)
            except ServiceUnavailable as exc:
                report.ready = False
                report.problems[stream.key] = str(exc)
                continue
            report.backlogs[stream.key] = backlog
            self._backlog[stream.key].set(backlog)
        return report

    async def refresh_backlogs(self) -> None:
        """Update ``killkrill_receiver_stream_backlog_entries`` (before a scrape)."""
        await self.check_ready()


def retry_after_header(exc: Backpressure | ServiceUnavailable) -> str:
    """``Retry-After`` in whole seconds (at least 1), as HTTP wants it."""
    return str(max(1, round(exc.delay)))
