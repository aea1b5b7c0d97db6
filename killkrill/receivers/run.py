"""Running receivers as a process: the HTTP API, the syslog server, or both in one loop.

SIGTERM/SIGINT stop accepting, drain the work in flight (HTTP requests, syslog batches
read off sockets) and return normally, so the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from killkrill.config import ReceiverSettings
from killkrill.receivers.http_app import build_http_app
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.receivers.ops_app import build_ops_app
from killkrill.receivers.sink import StreamSink
from killkrill.receivers.syslog_server import SyslogServer
from killkrill.streams import StreamNames, async_client
from killkrill.streams.durability import check_redis_durability

__all__ = ["serve", "stream_names"]

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: :func:`serve` owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def stream_names(settings: ReceiverSettings) -> StreamNames:
    """The pipeline's stream names (an explicit ``redis.key_prefix`` wins)."""
    if settings.redis.key_prefix:
        return StreamNames(prefix=settings.redis.key_prefix)
    return StreamNames.for_pipeline(settings.pipeline)


def _uvicorn(app: FastAPI, host: str, port: int) -> _Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    return _Server(config)


async def serve(settings: ReceiverSettings, *, http: bool, syslog: bool) -> None:
    """Run the chosen receivers until SIGTERM/SIGINT, then drain and return.

    Redis's durability settings are checked first
    (:func:`~killkrill.streams.durability.check_redis_durability`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    servers: list[_Server] = []
    syslog_server: SyslogServer | None = None
    client = async_client(settings.redis.url, socket_timeout=settings.redis.socket_timeout)
    try:
        await check_redis_durability(
            settings.redis,
            component="receiver",
            fsync=settings.durability == "fsync",
            client=client,
        )
        if http:
            servers.append(
                _uvicorn(
                    build_http_app(settings, client=client), settings.http.host, settings.http.port
                )
            )
        if syslog:
            metrics = ReceiverMetrics()
            sink = StreamSink(
                client,
                stream_names(settings),
                settings.backpressure,
                metrics,
                fsync_timeout=settings.append_fsync_timeout,
            )
            syslog_server = SyslogServer(settings.syslog, sink, metrics)
            await syslog_server.start()
            if not http:
                servers.append(
                    _uvicorn(
                        build_ops_app(sink, metrics), settings.syslog.host, settings.syslog.ops_port
                    )
                )
        tasks = [asyncio.create_task(s.serve()) for s in servers]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        log.info("shutting down: draining work in flight")
        if syslog_server is not None:
            await syslog_server.stop()
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        for task in done:
            if task is not stopper and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        await client.aclose()
        log.info("stopped")
