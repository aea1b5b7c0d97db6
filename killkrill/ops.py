"""The operations port of every long-running process: ``/healthz``, ``/readyz``, ``/metrics``.

A deliberately tiny HTTP/1.1 server on the process's own event loop (no framework: a few
GET routes, ``Connection: close``), so probes see the loop itself: a wedged loop fails
``/healthz``. The workers and the receivers (syslog and HTTP) all serve it.

* ``GET /healthz`` - 200 ``ok`` while the process is alive and not stopping.
* ``GET /readyz`` - 200 when ``ready()`` says every dependency answers, else 503 with why.
* ``GET /metrics`` - the process's Prometheus registry in the text format (after
  ``refresh()``, when given, has updated gauges that are read on demand).
* Any extra ``routes`` (path -> content type and body), e.g. the HTTP receiver's
  ``/openapi.json`` and ``/docs`` when they are kept off its ingest port.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["OpsServer", "ReadyCheck", "Route"]

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]
"""Returns ``(ready, detail)``; the detail is the body of ``/readyz``."""
Route = Callable[[], tuple[str, bytes]]
"""An extra GET route: returns ``(content type, body)`` (status 200)."""

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_MAX_HEAD_BYTES = 8192
_READ_TIMEOUT = 5.0
"""Seconds a client may take to send its request head."""
_TEXT = "text/plain; charset=utf-8"


class OpsServer:
    """Serves the probe routes on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        registry: CollectorRegistry,
        ready: ReadyCheck,
        alive: Callable[[], bool] = lambda: True,
        refresh: Callable[[], Awaitable[None]] | None = None,
        routes: Mapping[str, Route] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self._ready = ready
        self._alive = alive
        self._refresh = refresh
        self._routes = dict(routes or {})
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Start listening; return the bound port."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and close open probe connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        if len(head) > _MAX_HEAD_BYTES:
            writer.close()
            return
        parts = head.split(b"\r\n", 1)[0].split()
        method = parts[0].decode("latin-1") if parts else ""
        path = parts[1].decode("latin-1").split("?", 1)[0] if len(parts) > 1 else ""
        status, ctype, body = await self._route(method, path)
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
        )
        if method != "HEAD":
            writer.write(body)
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    async def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, _TEXT, b"method not allowed\n"
        if path == "/healthz":
            alive = self._alive()
            return (200 if alive else 503), _TEXT, b"ok\n" if alive else b"stopping\n"
        if path == "/readyz":
            try:
                ok, detail = await self._ready()
            except Exception as exc:  # a probe must answer, whatever the check raised
                ok, detail = False, f"readiness check failed: {exc}"
            return (200 if ok else 503), _TEXT, f"{detail}\n".encode()
        if path == "/metrics":
            if self._refresh is not None:
                with contextlib.suppress(Exception):  # stale gauges beat a failed scrape
                    await self._refresh()
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        route = self._routes.get(path)
        if route is not None:
            ctype, body = route()
            return 200, ctype, body
        known = ", ".join(["/healthz", "/readyz", "/metrics", *self._routes])
        return 404, _TEXT, f"not found; try {known}\n".encode()
