"""``LogWorker``: the logs stream into Elasticsearch, at-least-once reading, exactly-once effect.

Each batch goes through the shared :class:`~killkrill.workers.base.StreamWorker` loop:

1. read up to ``batch_size`` entries through the consumer group (idle pending entries of
   dead consumers first, reclaimed with XAUTOCLAIM, then new ones);
2. parse and transform each (:mod:`killkrill.workers.logs.transform`); an entry that cannot
   be parsed goes to the dead-letter stream with the reason and its payload byte for byte;
3. ``_bulk`` the documents (:mod:`killkrill.workers.logs.sink`), ``_id`` derived from the
   pipeline, stream and entry ID, so a redelivered entry overwrites its own document;
4. acknowledge (XACK + XDEL) what Elasticsearch accepted, dead-letter what it rejected for
   good (mapping errors), retry the rest with backoff and finally leave it pending.

Two ways to drive it:

* :meth:`LogWorker.process_batch` (sync, as the seed's tests call it; it runs on the
  worker's private event loop thread, :class:`~killkrill.workers.sync.LoopThread`, so it
  works from sync code, from inside a running loop and from several threads at once) and
  :meth:`LogWorker.aprocess_batch` (async, on the caller's loop);
* :meth:`LogWorker.run` - the long-running mode behind ``killkrill worker logs``
  (see :mod:`killkrill.workers.logs.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from elasticsearch import ApiError, TransportError
from redis.exceptions import RedisError

from killkrill.config.workers import LogWorkerSettings
from killkrill.errors import LogParseError, ServiceUnavailable
from killkrill.streams.connection import async_client
from killkrill.streams.consumer import ConsumerGroup, Entry
from killkrill.streams.heartbeat import WorkerActivity, run_heartbeat
from killkrill.streams.names import LOG_WORKER_GROUP, stream_names
from killkrill.workers.base import BatchResult, StreamWorker, sleep_or_stop
from killkrill.workers.health_gauges import HealthGauges
from killkrill.workers.logs.metrics import LogWorkerMetrics
from killkrill.workers.logs.settings import LogWorkerNames, settings_from_seed
from killkrill.workers.logs.sink import (
    ElasticsearchSink,
    credentials_source,
    elasticsearch_client,
)
from killkrill.workers.logs.template import install_template
from killkrill.workers.logs.transform import LogDocument, LogTransformer
from killkrill.workers.sync import LoopThread

__all__ = ["LogParseError", "LogWorker"]

log = logging.getLogger("killkrill.workers.logs")


@dataclass
class _Runtime:
    """Clients and loop-bound objects of one event loop (redis/aiohttp bind to theirs)."""

    redis: aioredis.Redis
    group: ConsumerGroup
    sink: ElasticsearchSink
    stream_worker: StreamWorker[LogDocument]
    prepared: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sink.close()
        with contextlib.suppress(Exception):
            await self.redis.aclose()


class LogWorker:
    """Reads the logs stream and indexes every record into Elasticsearch exactly once.

    ``config`` is the seed's flat dict (see
    :func:`~killkrill.workers.logs.settings.settings_from_seed`) or a
    :class:`~killkrill.config.LogWorkerSettings`. ``clock`` (for ``processed_at``) is for
    tests.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | LogWorkerSettings,
        *,
        metrics: LogWorkerMetrics | None = None,
        clock: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = (
            config if isinstance(config, LogWorkerSettings) else settings_from_seed(config)
        )
        self.names = LogWorkerNames.from_settings(self.settings)
        self.metrics = metrics or LogWorkerMetrics()
        self.activity = WorkerActivity(
            kind=LOG_WORKER_GROUP,
            consumer=self.names.consumer,
            pipeline=self.settings.pipeline,
            streams=[self.names.stream],
            sink="elasticsearch",
            prefix=stream_names(self.settings.pipeline, self.settings.redis.key_prefix).prefix,
        )
        """What this worker has done, written to Redis as its heartbeat while it runs."""
        self.health = HealthGauges(self.metrics.registry, self.activity)
        self.transformer = LogTransformer(
            self.settings.transform,
            pipeline=self.settings.pipeline,
            stream=self.names.stream,
            index_prefix=self.settings.elasticsearch.index_prefix,
            clock=clock,
        )
        self.backoff = self.settings.retry.backoff()
        self._runtimes: dict[asyncio.AbstractEventLoop, _Runtime] = {}
        self._sync = LoopThread("log-worker-loop")
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._stop_loop: asyncio.AbstractEventLoop | None = None

    # --- names --------------------------------------------------------------------------

    @property
    def stream(self) -> str:
        """The stream read (``logs-stream`` for the default pipeline)."""
        return self.names.stream

    @property
    def dead_letter_stream(self) -> str:
        """Where entries that can never succeed go (``<stream>:dead-letter``)."""
        return self.names.dead_letter_stream

    @property
    def consumer_name(self) -> str:
        """This worker's consumer name in the group."""
        return self.names.consumer

    @property
    def worker_name(self) -> str:
        """Recorded as ``worker`` on dead letters: ``log-worker/<consumer>``."""
        return f"log-worker/{self.names.consumer}"

    # --- sync API (the seed's) ----------------------------------------------------------

    def process_batch(
        self,
        count: int | None = None,
        *,
        max_retries: int | None = None,
        stop_on_error: bool = True,
    ) -> BatchResult:
        """Handle up to ``count`` entries (default ``batch_size``) and return the counts.

        Entries are read in batches of ``batch_size`` until ``count`` are handled or the
        stream has nothing more for this consumer; the call does not wait for new entries.
        ``max_retries`` overrides the configured retries of retryable failures. With
        ``stop_on_error`` (the default) a malformed entry raises :class:`LogParseError` -
        after the rest is handled and the bad entry is in the dead-letter stream; without
        it, malformed entries are counted in ``failed`` and dead-lettered.

        Raises :class:`~killkrill.errors.ServiceUnavailable` when Redis is unreachable, or
        Elasticsearch is while the index template is installed (nothing is read then).
        """
        return self._sync.run(
            lambda: self.aprocess_batch(count, max_retries=max_retries, stop_on_error=stop_on_error)
        )

    def close(self) -> None:
        """Close the clients of the sync API's loop and the loop itself (idempotent)."""
        self._sync.close(self._close_runtime)

    def __enter__(self) -> LogWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- async API ----------------------------------------------------------------------

    async def aprocess_batch(
        self,
        count: int | None = None,
        *,
        max_retries: int | None = None,
        stop_on_error: bool = True,
    ) -> BatchResult:
        """The async twin of :meth:`process_batch`, on the running loop."""
        rt = await self._prepared_runtime()
        started = time.perf_counter()
        total = count if count is not None else self.settings.consumer.batch_size
        result: BatchResult | None = None
        try:
            result = await rt.stream_worker.run(
                total,
                chunk=self.settings.consumer.batch_size,
                max_retries=max_retries,
                stop_on_error=stop_on_error,
            )
        finally:
            if result is not None:
                self.metrics.observe_batch(result, time.perf_counter() - started)
        return result

    def _observe(self, result: BatchResult) -> None:
        if result.read:
            self.metrics.observe_batch(result, result.seconds)

    async def ready(self) -> tuple[bool, str]:
        """Whether Redis and Elasticsearch both answer and the dead-letter stream has room
        (when an entry waits for it): ``(ok, detail)`` for ``/readyz``."""
        rt = self._runtime()
        try:
            await rt.redis.ping()
            redis_detail, redis_ok = "redis: ok", True
        except (RedisError, OSError) as exc:
            redis_detail, redis_ok = f"redis: {exc}", False
        es_ok, es_detail = await rt.sink.ready()
        full = await rt.group.dead_letter_problem() if redis_ok else None
        ok = redis_ok and es_ok and full is None
        self.metrics.ready.set(1 if ok else 0)
        return ok, f"{redis_detail}; {es_detail}" + (f"; {full}" if full else "")

    async def refresh_gauges(self) -> None:
        """Update the stream lag, pending and dead-letter gauges from Redis."""
        rt = self._runtime()
        self.metrics.lag.set(await rt.group.lag())
        self.metrics.pending.set(await rt.group.pending())
        self.metrics.dead_letters.set(await rt.redis.xlen(rt.group.dead_letter_stream))
        await self.health.refresh(rt.redis, self.names.stream, self.names.group)

    async def aclose(self) -> None:
        """Close the clients bound to the running loop."""
        await self._close_runtime()

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish the batch in flight and return (signal-safe)."""
        self._stopping = True
        event, loop = self._stop_event, self._stop_loop
        if event is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def run(
        self, *, on_batch: Callable[[BatchResult], Awaitable[None]] | None = None
    ) -> None:
        """Process batches until :meth:`request_stop`; the batches in flight are finished and
        acknowledged before returning (see :meth:`~killkrill.workers.base.StreamWorker.run`).

        ``consumer.in_flight`` caps the ``_bulk`` requests open at once (the sink's own cap);
        one lane more than that keeps a batch ready to send the moment a request is answered,
        while another lane acknowledges what its request delivered.

        Redis or Elasticsearch unreachable at start (the group cannot be created, the index
        template not installed) is waited out with backoff, as an outage later would be.
        """
        self._stop_loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        if self._stopping:
            self._stop_event.set()
        rt = await self._started_runtime(self._stop_event)
        if rt is None:
            return

        async def observe(result: BatchResult) -> None:
            self._observe(result)
            if on_batch is not None:
                await on_batch(result)

        async def ready() -> bool:
            ok, detail = await self.ready()
            if not ok:
                log.info("not ready yet", extra={"detail": detail})
            return ok

        c = self.settings.consumer
        beats = asyncio.create_task(
            run_heartbeat(rt.redis, self.activity, self._stop_event, c.heartbeat_seconds)
        )
        try:
            await rt.stream_worker.run(
                chunk=c.batch_size,
                lanes=c.in_flight + 1,
                stop=self._stop_event,
                ready=ready,
                block_ms=c.block_ms,
                on_batch=observe,
                activity=self.activity,
            )
        finally:
            if self._stop_event.is_set():
                await beats  # its last beat retires this worker's heartbeat
            else:
                beats.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beats

    # --- internals ----------------------------------------------------------------------

    def _parse_batch(self, entries: Sequence[Entry]) -> list[LogDocument | LogParseError]:
        return self.transformer.documents([(*entry.identity, entry.data) for entry in entries])

    def _runtime(self) -> _Runtime:
        loop = asyncio.get_running_loop()
        rt = self._runtimes.get(loop)
        if rt is None:
            s = self.settings
            redis = async_client(s.redis.url, socket_timeout=s.redis.socket_timeout)
            group = ConsumerGroup(
                redis,
                self.names.stream,
                self.names.group,
                self.names.consumer,
                claim_idle_ms=s.consumer.claim_idle_ms,
                dead_letter_key=self.names.dead_letter_stream,
                max_dead_letters=s.consumer.max_dead_letters,
                on_dead_letter_refused=self.metrics.dead_letter_refused.inc,
            )
            sink = ElasticsearchSink(
                elasticsearch_client(s.elasticsearch),
                metrics=self.metrics,
                max_in_flight=s.consumer.in_flight,
                credentials=credentials_source(s.elasticsearch),
            )
            stream_worker = StreamWorker(
                group,
                sink,
                self._parse_batch,
                worker_name=self.worker_name,
                backoff=self.backoff,
                max_retries=s.retry.max_retries,
                max_deliveries=s.consumer.max_deliveries,
                parse_error=LogParseError,
            )
            rt = _Runtime(redis, group, sink, stream_worker)
            self._runtimes[loop] = rt
        return rt

    async def _prepared_runtime(self) -> _Runtime:
        """The loop's runtime with the group created and the index template installed."""
        rt = self._runtime()
        if rt.prepared:
            return rt
        async with rt.lock:
            if not rt.prepared:
                await rt.group.ensure()
                if self.settings.install_template:
                    try:
                        await install_template(
                            rt.sink.client,
                            self.settings.elasticsearch.index_prefix,
                            number_of_replicas=self.settings.number_of_replicas,
                        )
                    except (ApiError, TransportError) as exc:
                        raise ServiceUnavailable(
                            "cannot install the index template in Elasticsearch: "
                            + rt.sink.describe(exc, "the index template install")
                        ) from exc
                rt.prepared = True
        return rt

    async def _started_runtime(self, stop: asyncio.Event) -> _Runtime | None:
        """:meth:`_prepared_runtime`, retried with backoff while a dependency is unavailable;
        None if ``stop`` is set first."""
        attempt = 0
        while not stop.is_set():
            try:
                return await self._prepared_runtime()
            except ServiceUnavailable as exc:
                attempt += 1
                log.warning("cannot start yet, waiting", extra={"error": str(exc)})
                await sleep_or_stop(stop, self.backoff.delay(attempt))
        return None

    async def _close_runtime(self) -> None:
        loop = asyncio.get_running_loop()
        rt = self._runtimes.pop(loop, None)
        if rt is not None:
            await rt.close()
