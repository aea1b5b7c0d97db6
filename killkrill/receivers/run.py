"""Running receivers as a process: the HTTP API, the syslog server, or both in one loop.

One Redis client, one stream sink, one metrics registry and one ops port
(:class:`killkrill.ops.OpsServer` on ``ops.port``) per process. SIGTERM/SIGINT stop
accepting, drain the work in flight (HTTP requests, every syslog frame already read) and
return normally, so the process exits 0. SIGHUP re-reads the API keys file (and never
ends a process, even one without keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import uvicorn

from killkrill.config import ReceiverSettings, redact_url
from killkrill.ops import OpsServer
from killkrill.receivers.auth import Authenticator
from killkrill.receivers.http_app import build_http_app, ops_routes
from killkrill.receivers.http_server import build_http_server
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.receivers.sink import StreamSink
from killkrill.receivers.syslog_server import SyslogServer
from killkrill.stackdump import install_stack_dump
from killkrill.streams import async_client
from killkrill.streams.durability import wait_for_redis_durability

__all__ = ["serve"]

log = logging.getLogger(__name__)


async def serve(settings: ReceiverSettings, *, http: bool, syslog: bool) -> None:
    """Run the chosen receivers until SIGTERM/SIGINT, then drain and return.

    Redis's durability settings are checked first, waiting for Redis while it does not
    answer (:func:`~killkrill.streams.durability.wait_for_redis_durability`)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _nothing_to_reload)
    install_stack_dump(loop)
    client = async_client(settings.redis.url, socket_timeout=settings.redis.socket_timeout)
    metrics = ReceiverMetrics()
    sink = StreamSink.from_settings(client, settings, metrics)
    auth = Authenticator(settings.auth, settings.streams) if http else None
    app = build_http_app(settings, sink=sink, auth=auth) if http else None

    async def ready() -> tuple[bool, str]:
        if stop.is_set():
            return False, "stopping"
        report = await sink.check_ready()
        return report.ready, report.to_text()

    ops = OpsServer(
        settings.ops.host,
        settings.ops.port,
        registry=metrics.registry,
        ready=ready,
        alive=lambda: not stop.is_set(),
        refresh=sink.refresh_backlogs,
        routes=ops_routes(app) if app is not None else None,
    )
    http_server = build_http_server(app, settings.http) if app is not None else None
    http_task: asyncio.Task[None] | None = None
    syslog_server: SyslogServer | None = None
    background: list[asyncio.Task[Any]] = []
    try:
        checked = await wait_for_redis_durability(
            settings.redis,
            component="receiver",
            stop=stop,
            fsync=settings.durability == "fsync",
            client=client,
        )
        if checked is None:  # asked to stop while waiting for Redis: nothing was started
            return
        if syslog:
            syslog_server = SyslogServer(settings, sink, metrics)
            await syslog_server.start()
        if http_server is not None and auth is not None:
            http_task = asyncio.create_task(http_server.serve(), name="http")
            await _started(http_server, http_task)
            loop.add_signal_handler(signal.SIGHUP, auth.reload)
            background.append(asyncio.create_task(auth.watch(), name="api-keys-watch"))
        # The ops port opens last: its /healthz answering means every listener is up.
        ops_port = await ops.start()
        log.info(
            "receiver started",
            extra={
                "http": http,
                "syslog": syslog,
                "ops_port": ops_port,
                "redis": redact_url(settings.redis.url),
            },
        )
        stopped = asyncio.create_task(stop.wait(), name="stop")
        background.append(stopped)
        await asyncio.wait(
            [stopped] if http_task is None else [stopped, http_task],
            return_when=asyncio.FIRST_COMPLETED,
        )
        stop.set()  # also when the HTTP server ended by itself
        log.info("shutting down: draining work in flight")
        if syslog_server is not None:
            await syslog_server.stop()
    finally:
        if http_server is not None and http_task is not None:
            http_server.should_exit = True  # finishes the requests in flight
            await asyncio.gather(http_task, return_exceptions=True)
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loop.remove_signal_handler(signal.SIGHUP)
        await ops.stop()
        await client.aclose()
        log.info("stopped")
    if http_task is not None and not http_task.cancelled() and http_task.exception():
        raise http_task.exception()  # type: ignore[misc]


def _nothing_to_reload() -> None:
    log.info("SIGHUP ignored: this process holds no API keys to reload (or is starting)")


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    """Wait until uvicorn listens (it sets no event); raise what ended it if it failed."""
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the HTTP server stopped before it listened")
        await asyncio.sleep(0.01)
