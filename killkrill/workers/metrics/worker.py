"""The metrics worker: metric streams -> PostgreSQL aggregates -> ``/metrics``.

:class:`MetricsWorker` is built from :class:`~killkrill.config.MetricsWorkerSettings` or
from the seed's flat dict (:func:`~killkrill.workers.metrics.settings.settings_from_seed`).
It reads each stream through its own consumer group (``metrics-worker`` by default, one
consumer per process), parses samples with the shared schema, and hands them to
:class:`~killkrill.workers.metrics.store.MetricsSink` through the shared
:class:`~killkrill.workers.base.StreamWorker` loop (dead-lettering, retries, ack only after
COMMIT).

Three ways to drive it:

* :meth:`MetricsWorker.aggregate_batch` - blocking, for scripts and plain sync tests: runs
  on the worker's own event loop in a private thread, so it also works when the caller is
  itself inside a running loop. One batch after the other, in stream order.
* :meth:`MetricsWorker.process_stream_async` - drain ``<name>-stream``; several run
  concurrently (each uses its own Redis connection and consumer group; the PostgreSQL
  transactions run in threads). ``consumer.in_flight`` batches of a stream at once.
* :meth:`MetricsWorker.run` - the long-running mode of ``killkrill worker metrics``: every
  configured stream (``consumer.in_flight`` batches of each at once), the ops port (its
  ``/metrics`` aggregates from a snapshot refreshed in a thread, see
  :mod:`~killkrill.workers.metrics.snapshot`) and scheduled retention
  (:mod:`~killkrill.workers.metrics.retention`), until ``stop`` is set.

Batches in flight together overlap the Python work of one (read, parse, fold) with the
PostgreSQL work of another. Their transactions take locks in one order - series advisory
locks by name, ledger rows by entry ID, aggregate rows by (name, labels hash, bucket) - so
they never deadlock; two that update the same aggregate row are serialised by its row lock.

Both batch methods return a :class:`~killkrill.workers.base.BatchResult`: ``success`` is
the number of entries delivered (applied now, or found already applied), so it is truthy
exactly when the stream had entries and at least one was delivered; ``failed`` counts the
dead-lettered plus those left pending for a later retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.engine import Engine

from killkrill.config.secrets import redact_url
from killkrill.config.workers import MetricsWorkerSettings
from killkrill.db import create_engine
from killkrill.db.engine import ping
from killkrill.db.retention import PruneResult
from killkrill.errors import ValidationError
from killkrill.ops import OpsServer
from killkrill.streams.connection import async_client
from killkrill.streams.consumer import ConsumerGroup, default_consumer_name
from killkrill.streams.durability import RedisDurability, wait_for_redis_durability
from killkrill.streams.heartbeat import WorkerActivity, run_heartbeat
from killkrill.streams.names import METRICS_WORKER_GROUP, stream_names
from killkrill.workers.base import (
    BatchResult,
    StreamWorker,
    parse_each,
    run_lanes,
    run_together,
)
from killkrill.workers.health_gauges import HealthGauges
from killkrill.workers.metrics import retention
from killkrill.workers.metrics.collector import AggregatesCollector
from killkrill.workers.metrics.instruments import Instruments
from killkrill.workers.metrics.sample import Sample, SampleParser
from killkrill.workers.metrics.settings import settings_from_seed
from killkrill.workers.metrics.snapshot import AggregatesSnapshot, exposition_engine
from killkrill.workers.metrics.store import MetricsSink, MetricStore
from killkrill.workers.sync import LoopThread

__all__ = ["DEFAULT_GROUP", "MetricsWorker"]

log = logging.getLogger("killkrill.workers.metrics")

DEFAULT_GROUP = METRICS_WORKER_GROUP
"""Consumer group of every metrics worker replica on a stream (one group per worker kind),
prefixed ``<pipeline>:`` for every pipeline but ``default``."""

T = TypeVar("T")


class MetricsWorker:
    """Aggregates metric samples from Redis Streams into PostgreSQL (see module doc)."""

    def __init__(self, config: MetricsWorkerSettings | Mapping[str, Any] | None = None) -> None:
        if config is None:
            config = MetricsWorkerSettings.load()
        self.settings = (
            config if isinstance(config, MetricsWorkerSettings) else settings_from_seed(config)
        )
        s = self.settings
        self.names = stream_names(s.pipeline, s.redis.key_prefix)
        self.group = s.consumer.group or self.names.group(DEFAULT_GROUP)
        self.consumer = s.consumer.name or default_consumer_name()
        self.instruments = Instruments()
        self.activity = WorkerActivity(
            kind=METRICS_WORKER_GROUP,
            consumer=self.consumer,
            pipeline=s.pipeline,
            streams=[self.names.named(name) for name in s.streams],
            sink="postgres",
            prefix=self.names.prefix,
        )
        """What this worker has done, written to Redis as its heartbeat while it runs."""
        self.health = HealthGauges(self.instruments.registry, self.activity)
        self.engine: Engine = create_engine(
            s.database.url,
            pool_size=s.database.pool_size,
            connect_args={
                "connect_timeout": 5,
                "options": f"-c statement_timeout={int(s.aggregation.statement_timeout * 1000)}",
            },
        )
        self.store = MetricStore(
            self.engine,
            pipeline=s.pipeline,
            bucket_seconds=s.aggregation.bucket_seconds,
            max_series_per_metric=s.aggregation.max_series_per_metric,
            instruments=self.instruments,
            series_cache_size=s.aggregation.series_cache_size,
        )
        self.parser = SampleParser(s.aggregation.parse_cache_size)
        self.sink = MetricsSink(self.store)
        self.snapshot: AggregatesSnapshot | None = None
        if s.exposition.enabled:
            self.snapshot = AggregatesSnapshot(
                exposition_engine(
                    s.database.url, query_timeout_seconds=s.exposition.query_timeout_seconds
                ),
                pipeline=s.pipeline,
                max_age_seconds=s.exposition.max_age_seconds,
                refresh_seconds=s.exposition.refresh_seconds,
                instruments=self.instruments,
            )
            self.instruments.registry.register(AggregatesCollector(self.snapshot))
        self.backoff = s.retry.backoff()
        self._sync = LoopThread("metrics-worker-loop")
        self._sync_client: aioredis.Redis | None = None
        self._stopping = False
        self._groups: dict[str, ConsumerGroup] = {}
        """The latest consumer group of each stream (readiness asks them about dead letters)."""

    # --- names -----------------------------------------------------------------------------

    def stream_key(self, name: str) -> str:
        """Redis key of the metric stream ``name`` (``metrics`` -> ``metrics-stream``)."""
        return self.names.named(name)

    # --- building blocks ---------------------------------------------------------------------

    def _new_client(self) -> aioredis.Redis:
        return async_client(
            self.settings.redis.url, socket_timeout=self.settings.redis.socket_timeout
        )

    def stream_worker(self, client: aioredis.Redis, stream_key: str) -> StreamWorker[Sample]:
        """The shared read -> parse -> write -> ack loop for ``stream_key`` over ``client``."""
        c = self.settings.consumer
        group = ConsumerGroup(
            client,
            stream_key,
            self.group,
            self.consumer,
            claim_idle_ms=c.claim_idle_ms,
            max_dead_letters=c.max_dead_letters,
            on_dead_letter_refused=self.instruments.dead_letter_refused.labels(stream_key).inc,
        )
        self._groups[stream_key] = group
        return StreamWorker(
            group,
            self.sink,
            parse_each(self.parser.parse_entry),
            worker_name=f"metrics-worker/{self.consumer}",
            backoff=self.backoff,
            max_retries=self.settings.retry.max_retries,
            max_deliveries=c.max_deliveries,
            parse_error=ValidationError,
        )

    async def _drain(
        self,
        client: aioredis.Redis,
        stream_key: str,
        count: int | None,
        *,
        max_retries: int | None = None,
        stop_on_error: bool = False,
        lanes: int = 1,
    ) -> BatchResult:
        """Up to ``count`` entries (None: until the stream is empty) in batches, ``lanes`` of
        them in flight at once (1: one after the other, in stream order)."""
        worker = self.stream_worker(client, stream_key)
        await worker.group.ensure()
        limit = count if count is not None else 2**62
        chunk = self.settings.consumer.batch_size
        result = await worker.run(
            limit, chunk=chunk, max_retries=max_retries, stop_on_error=stop_on_error, lanes=lanes
        )
        self._count(stream_key, result)
        return result

    def _count(self, stream_key: str, result: BatchResult) -> None:
        self.instruments.read.labels(stream_key).inc(result.read)
        self.instruments.dead_lettered.labels(stream_key).inc(result.dead_lettered)

    # --- the seed's API ----------------------------------------------------------------------

    def aggregate_batch(
        self,
        count: int | None = None,
        *,
        stream: str = "metrics",
        max_retries: int | None = None,
        stop_on_error: bool = False,
    ) -> BatchResult:
        """Aggregate up to ``count`` entries (default: one batch, ``batch_size``) of
        ``<stream>-stream`` (default ``metrics-stream``) and return what happened.

        Blocking; safe to call from sync code and from inside a running event loop (it runs
        on the worker's own loop in a private thread). With ``stop_on_error`` an invalid
        sample raises :class:`~killkrill.errors.ValidationError` once the whole batch is
        handled (the bad entries are dead-lettered by then).
        """
        n = count if count is not None else self.settings.consumer.batch_size

        async def go() -> BatchResult:
            if self._sync_client is None:
                self._sync_client = self._new_client()
            return await self._drain(
                self._sync_client,
                self.stream_key(stream),
                n,
                max_retries=max_retries,
                stop_on_error=stop_on_error,
            )

        return self._run_sync(go)

    async def aggregate_batch_async(
        self, count: int | None = None, *, stream: str = "metrics", max_retries: int | None = None
    ) -> BatchResult:
        """:meth:`aggregate_batch` for async callers (a connection of their own loop)."""
        n = count if count is not None else self.settings.consumer.batch_size
        async with self._new_client() as client:
            return await self._drain(client, self.stream_key(stream), n, max_retries=max_retries)

    async def process_stream_async(self, name: str, *, count: int | None = None) -> BatchResult:
        """Drain ``<name>-stream`` (or up to ``count`` entries) through its consumer group.

        Returns the :class:`BatchResult` of the whole run: ``success`` is the number of
        entries delivered, > 0 (truthy) whenever the stream had entries and any of them was
        aggregated; ``failed`` the dead-lettered plus those left pending.

        ``consumer.in_flight`` batches are handled at once (one read and parsed while another
        is written), as in the long-running mode; so, as with several workers on a stream,
        which of several new series a batch admits under the cardinality cap depends on
        which batch commits first. :meth:`aggregate_batch` is strictly sequential.
        """
        async with self._new_client() as client:
            return await self._drain(
                client, self.stream_key(name), count, lanes=self.settings.consumer.in_flight
            )

    # --- the long-running mode -----------------------------------------------------------------

    async def run(
        self,
        stop: asyncio.Event,
        *,
        on_started: Callable[[int], None] | None = None,
    ) -> None:
        """Aggregate every configured stream until ``stop`` is set, then finish the batches in
        flight (written and acked) and return. Serves the ops port meanwhile and prunes on the
        retention schedule. ``on_started`` gets the bound ops port. The ops port opens
        first (alive, unready until Redis answers); then Redis's durability settings are
        checked, waiting for Redis while it does not answer."""
        s = self.settings
        client = self._new_client()
        checked: RedisDurability | None = None

        async def ready() -> tuple[bool, str]:
            if checked is None:
                return False, "starting: waiting for Redis (its durability settings are checked)"
            return await self.ready(client)

        async def refresh() -> None:
            for key in self.activity.streams:
                await self.health.refresh(client, key, self.group)

        ops = OpsServer(
            s.ops.host,
            s.ops.port,
            registry=self.instruments.registry,
            ready=ready,
            alive=lambda: not stop.is_set(),
            refresh=refresh,
        )
        port = await ops.start()
        try:
            checked = await wait_for_redis_durability(
                s.redis, component="metrics-worker", stop=stop, client=client
            )
            if checked is None:  # stopped while waiting for Redis
                return
            if self.snapshot is not None:
                self.snapshot.start()
            log.info(
                "metrics worker started",
                extra={
                    "streams": [self.stream_key(n) for n in s.streams],
                    "redis": redact_url(s.redis.url),
                    "database": redact_url(s.database.url),
                    "ops_port": port,
                    "group": self.group,
                    "consumer": self.consumer,
                },
            )
            if on_started is not None:
                on_started(port)
            tasks = [
                asyncio.create_task(self._stream_loop(client, self.stream_key(name), stop))
                for name in s.streams
            ]
            tasks.append(
                asyncio.create_task(
                    run_heartbeat(client, self.activity, stop, s.consumer.heartbeat_seconds)
                )
            )
            if s.retention.interval_seconds > 0:
                tasks.append(
                    asyncio.create_task(
                        retention.prune_periodically(
                            lambda: self._prune_round(client), stop, s.retention.interval_seconds
                        )
                    )
                )
            await run_together(tasks)
        finally:
            await ops.stop()
            if self.snapshot is not None:
                self.snapshot.stop()
            await client.aclose()
            log.info("metrics worker stopped")

    async def _stream_loop(
        self, client: aioredis.Redis, stream_key: str, stop: asyncio.Event
    ) -> None:
        """``consumer.in_flight`` lanes of batches on one stream, sharing its consumer (see
        :func:`~killkrill.workers.base.run_lanes`). While one lane waits for PostgreSQL,
        another reads and parses; their transactions lock rows in the same order, so they
        cannot deadlock (a row both update waits for the first COMMIT)."""
        worker = self.stream_worker(client, stream_key)
        await worker.group.ensure()
        c = self.settings.consumer

        async def count(result: BatchResult) -> None:
            self._count(stream_key, result)

        async def ready() -> bool:
            ok, _detail = await self.ready(client)
            return ok

        await run_lanes(
            worker,
            stop,
            lanes=c.in_flight,
            batch_size=c.batch_size,
            block_ms=c.block_ms or None,
            ready=ready,
            on_batch=count,
            activity=self.activity,
        )

    async def ready(self, client: aioredis.Redis) -> tuple[bool, str]:
        """``/readyz``: Redis answers PING, PostgreSQL answers ``SELECT 1`` (in a thread), and
        no stream waits for room in its full dead-letter stream."""
        problems: list[str] = []
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            problems.append(f"redis: {exc}")
        why = await asyncio.to_thread(ping, self.engine)
        if why is not None:
            problems.append(f"postgresql: unreachable ({why})")
        if not problems:
            for group in list(self._groups.values()):
                full = await group.dead_letter_problem()
                if full:
                    problems.append(full)
        return (not problems, "; ".join(problems) or "ready")

    # --- retention -----------------------------------------------------------------------------

    async def _prune_round(self, client: aioredis.Redis) -> retention.RetentionReport:
        s = self.settings
        report = await retention.prune(
            self.engine,
            client,
            max_age_seconds=s.retention.max_age_seconds,
            streams=[self.stream_key(name) for name in s.streams],
            pipeline=s.pipeline,
        )
        result = report.result
        for table, n in (
            ("aggregated_metrics", result.buckets),
            ("metric_series", result.series),
            ("metric_applied_entries", result.ledger),
        ):
            self.instruments.pruned.labels(table).inc(n)
        if result.series:  # series known to this process may be gone
            self.store.series.clear()
        return report

    async def prune_async(self, client: aioredis.Redis) -> PruneResult:
        """Delete buckets past ``retention.max_age_seconds``, orphaned series, and ledger rows
        of entries that no consumer of any group can be delivered again (see
        :mod:`~killkrill.workers.metrics.retention`)."""
        return (await self._prune_round(client)).result

    def prune(self) -> PruneResult:
        """Blocking :meth:`prune_async` on the worker's own loop."""

        async def go() -> PruneResult:
            if self._sync_client is None:
                self._sync_client = self._new_client()
            return await self.prune_async(self._sync_client)

        return self._run_sync(go)

    # --- the private loop of the blocking API ----------------------------------------------

    def _run_sync(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return self._sync.run(factory)

    def close(self) -> None:
        """Close Redis and PostgreSQL connections and stop the private loop (idempotent)."""

        async def close_client() -> None:
            client, self._sync_client = self._sync_client, None
            if client is not None:
                await client.aclose()

        self._sync.close(close_client)
        if self.snapshot is not None:
            self.snapshot.stop()
            self.snapshot.engine.dispose()
        self.engine.dispose()

    def __enter__(self) -> MetricsWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
