"""The long-running log worker process: signals, the ops port, periodic gauges.

``SIGTERM`` (and ``SIGINT``) ask the worker to stop: the batch in flight is finished and
acknowledged, the ops port closes, the clients close, and :func:`serve` returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from killkrill.config.secrets import redact_url
from killkrill.config.workers import LogWorkerSettings
from killkrill.ops import OpsServer
from killkrill.stackdump import install_stack_dump
from killkrill.streams.durability import RedisDurability, wait_for_redis_durability
from killkrill.workers.base import BatchResult, every
from killkrill.workers.gctune import tune_for_streaming
from killkrill.workers.logs.sink import credentials_source
from killkrill.workers.logs.worker import LogWorker
from killkrill.workers.shutdown import finish_within

__all__ = ["GAUGE_INTERVAL", "serve"]

log = logging.getLogger("killkrill.workers.logs")

GAUGE_INTERVAL = 5.0
"""Seconds between updates of the stream lag and pending gauges."""


async def serve(settings: LogWorkerSettings, *, ops: bool = True) -> int:
    """Run a log worker until SIGTERM/SIGINT; return the process exit code (0).

    The ops port opens first (alive; unready until the worker runs); then Redis's
    durability settings are checked, waiting for Redis while it does not answer."""
    worker = LogWorker(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stopper(worker, stopping, sig))
    install_stack_dump(loop)
    checked: RedisDurability | None = None

    async def ready() -> tuple[bool, str]:
        if checked is None:
            return False, "starting: waiting for Redis (its durability settings are checked)"
        return await worker.ready()

    server: OpsServer | None = None
    if ops:
        server = OpsServer(
            settings.ops.host, settings.ops.port, registry=worker.metrics.registry, ready=ready
        )
        await server.start()
    try:
        checked = await wait_for_redis_durability(
            settings.redis, component="log-worker", stop=stopping
        )
    except BaseException:
        await _stop_quietly(worker, server)
        raise
    if checked is None:  # stopped while waiting for Redis
        await _stop_quietly(worker, server)
        return 0
    totals = BatchResult()

    async def on_batch(result: BatchResult) -> None:
        totals.merge(result)

    gauges = asyncio.create_task(every(GAUGE_INTERVAL, stopping, worker.refresh_gauges))
    tune_for_streaming()  # after start-up: see killkrill.workers.gctune
    log.info(
        "log worker started",
        extra={
            "stream": worker.stream,
            "group": worker.names.group,
            "consumer": worker.consumer_name,
            "dead_letter_stream": worker.dead_letter_stream,
            "redis": redact_url(settings.redis.url),
            "elasticsearch": redact_url(settings.elasticsearch.url),
            "elasticsearch_auth": credentials_source(settings.elasticsearch),
            "elasticsearch_index": f"{settings.elasticsearch.index_prefix}-YYYY.MM.DD",
            "ops_port": server.port if server else None,
        },
    )
    try:
        await finish_within(
            worker.run(on_batch=on_batch),
            stopping,
            settings.consumer.stop_timeout,
            what="the log worker",
        )
    finally:
        stopping.set()  # ends the gauges' loop, whichever way the run ended
        gauges.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await gauges
        if server is not None:
            await server.stop()
        await worker.aclose()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info(
        "log worker stopped",
        extra={
            "read": totals.read,
            "indexed": totals.success,
            "dead_lettered": totals.dead_lettered,
            "left_pending": totals.pending,
        },
    )
    return 0


def _stopper(worker: LogWorker, stopping: asyncio.Event, sig: signal.Signals) -> Callable[[], None]:
    def stop() -> None:
        log.info("stop requested; finishing the batch in flight", extra={"signal": sig.name})
        stopping.set()
        worker.request_stop()

    return stop


async def _stop_quietly(worker: LogWorker, server: OpsServer | None) -> None:
    """Close what :func:`serve` opened before the worker ran."""
    if server is not None:
        await server.stop()
    await worker.aclose()
