"""The HTTP server under the ingest app: uvicorn, with a request-header deadline.

uvicorn closes idle kept-alive connections (``timeout_keep_alive``) but sets no deadline on
a request's headers: a client that connects and sends nothing, or sends its headers a byte
at a time (slow-loris), keeps a connection open for ever. :class:`_HeaderDeadlineProtocol`
arms a timer when a connection opens and when a new request's first byte arrives, and
answers 408 and closes when the headers are not complete by ``http.header_timeout``. The
body has its own deadline in the app (``http.body_timeout``, see
:func:`killkrill.receivers.body.read_limited`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from killkrill.config import HttpReceiverSettings

__all__ = ["build_http_server"]

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 47\r\n\r\n"
    b"request headers not received in time; send them\n"
)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the receiver process owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on each request's headers."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def build_http_server(app: Any, settings: HttpReceiverSettings) -> uvicorn.Server:
    """A uvicorn server for ``app`` on ``settings.host:settings.port`` with the receiver's
    timeouts; run it with ``await server.serve()``, stop it with ``should_exit = True``."""
    protocol = type(
        "HeaderDeadlineProtocol",
        (_HeaderDeadlineProtocol,),
        {"header_timeout": settings.header_timeout},
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    return _Server(config)
