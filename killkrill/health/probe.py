"""Read a pipeline's health from Redis and its sinks (the I/O half of :mod:`killkrill.health`).

:func:`check` reads, for one pipeline: each stream's facts and its consumer group
(:func:`~killkrill.streams.facts.stream_facts`), the live workers' heartbeats
(:func:`~killkrill.streams.heartbeat.read_heartbeats`), Elasticsearch's cluster health and
PostgreSQL's ``SELECT 1``; then :func:`~killkrill.health.verdict.judge` gives the verdict.
Every probe has a short timeout: a health check answers in seconds whatever is down.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from elasticsearch import ApiError, TransportError

from killkrill.config.common import DatabaseSettings, ElasticsearchSettings, RedisSettings
from killkrill.config.pipeline import ComponentSettings
from killkrill.config.secrets import redact_url
from killkrill.db.engine import create_engine, ping
from killkrill.errors import ConfigError, ServiceUnavailable
from killkrill.esclient import elasticsearch_client
from killkrill.health.model import PipelineHealth, SinkHealth, Thresholds
from killkrill.health.verdict import judge
from killkrill.streams.connection import async_client
from killkrill.streams.facts import StreamFacts, stream_facts
from killkrill.streams.heartbeat import Heartbeat, read_heartbeats
from killkrill.streams.names import (
    LOG_WORKER_GROUP,
    METRICS_WORKER_GROUP,
    log_stream_key,
    stream_names,
)

__all__ = ["HealthTarget", "StreamTarget", "check"]

PROBE_SECONDS = 3.0
"""Timeout of each probe (Redis commands, Elasticsearch, PostgreSQL)."""


@dataclass(frozen=True)
class StreamTarget:
    """A stream, the consumer group that reads it and the kind of worker in that group."""

    key: str
    group: str
    kind: str


@dataclass(frozen=True)
class HealthTarget:
    """Where one pipeline's facts are read."""

    name: str
    redis: RedisSettings
    prefix: str
    streams: tuple[StreamTarget, ...]
    elasticsearch: ElasticsearchSettings | None
    database: DatabaseSettings | None

    @classmethod
    def from_settings(cls, settings: ComponentSettings) -> HealthTarget:
        """The streams, groups and sinks of the pipeline ``settings`` describe."""
        lw, mw = settings.log_worker, settings.metrics_worker
        names = stream_names(lw.pipeline, lw.redis.key_prefix)
        metric_names = stream_names(mw.pipeline, mw.redis.key_prefix)
        log_group = lw.consumer.group or names.group(LOG_WORKER_GROUP)
        metrics_group = mw.consumer.group or metric_names.group(METRICS_WORKER_GROUP)
        streams = [StreamTarget(log_stream_key(lw), log_group, LOG_WORKER_GROUP)]
        streams += [
            StreamTarget(metric_names.named(n), metrics_group, METRICS_WORKER_GROUP)
            for n in mw.streams
        ]
        return cls(
            name=lw.pipeline,
            redis=lw.redis,
            prefix=names.prefix,
            streams=tuple(streams),
            elasticsearch=lw.elasticsearch,
            database=mw.database,
        )


async def check(target: HealthTarget, thresholds: Thresholds | None = None) -> PipelineHealth:
    """The pipeline's facts and verdict, now."""
    thresholds = thresholds or Thresholds()
    now = time.time()
    probed = await asyncio.gather(
        _elasticsearch(target.elasticsearch), asyncio.to_thread(_postgres, target.database)
    )
    streams: list[StreamFacts] = []
    workers: list[Heartbeat] = []
    redis_error: str | None = None
    client = async_client(target.redis.url, socket_timeout=PROBE_SECONDS)
    try:
        for s in target.streams:
            streams.append(await stream_facts(client, s.key, s.group))
        workers = await read_heartbeats(client, target.prefix)
    except ServiceUnavailable as exc:
        redis_error = f"{redact_url(target.redis.url)}: {exc}"
    finally:
        await client.aclose()
    sinks = [_with_last_success(sink, workers) for sink in probed if sink is not None]
    kinds = {s.key: s.kind for s in target.streams}
    verdict = judge(
        [(facts, kinds[facts.name]) for facts in streams],
        workers,
        sinks,
        now=now,
        thresholds=thresholds,
        redis_error=redis_error,
    )
    return PipelineHealth(
        target.name, verdict.verdict, verdict.reason, now, streams, workers, sinks
    )


def _with_last_success(sink: SinkHealth, workers: list[Heartbeat]) -> SinkHealth:
    times = [w.last_success_at for w in workers if w.sink == sink.name and w.last_success_at]
    if not times:
        return sink
    return SinkHealth(sink.name, sink.state, sink.detail, max(times))


async def _elasticsearch(settings: ElasticsearchSettings | None) -> SinkHealth | None:
    if settings is None:
        return None
    try:
        client = elasticsearch_client(settings)
    except ConfigError as exc:
        return SinkHealth("elasticsearch", "unknown", str(exc))
    try:
        answer = await client.options(request_timeout=PROBE_SECONDS).cluster.health()
    except ApiError as exc:
        return SinkHealth("elasticsearch", "degraded", f"HTTP {exc.meta.status}: {exc.message}")
    except TransportError as exc:
        where = redact_url(settings.url)
        return SinkHealth("elasticsearch", "unreachable", f"{where}: {type(exc).__name__}")
    finally:
        await client.close()
    status = str(answer.body.get("status", "unknown"))
    if status == "red":
        return SinkHealth("elasticsearch", "degraded", "cluster health is red")
    return SinkHealth("elasticsearch", "ok", f"cluster health is {status}")


def _postgres(settings: DatabaseSettings | None) -> SinkHealth | None:
    if settings is None:
        return None
    timeout = max(1, int(PROBE_SECONDS))
    engine = create_engine(
        settings.url,
        pool_size=1,
        max_overflow=0,
        connect_args={
            "connect_timeout": timeout,
            "options": f"-c statement_timeout={timeout * 1000}",
        },
    )
    try:
        why = ping(engine)
    finally:
        engine.dispose()
    if why is not None:
        return SinkHealth("postgres", "unreachable", f"{redact_url(settings.url)}: {why}")
    return SinkHealth("postgres", "ok", "answers SELECT 1")
