"""The syslog server: UDP, TCP and TLS listeners feeding the shared stream sink.

TCP/TLS: each connection reads a chunk, splits it into frames, parses them and appends
them to Redis *before* reading the next chunk. When the stream is over its backlog limit
(or Redis is down) the append is retried after a pause and nothing more is read from the
socket, so the kernel's buffers fill and TCP flow control slows the sender: backpressure
without loss. UDP cannot push back: datagrams wait in a bounded queue and those that do not
fit are dropped and counted (``killkrill_receiver_syslog_udp_dropped_total``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

import orjson

from killkrill.config import SyslogSettings
from killkrill.errors import Backpressure, ServiceUnavailable
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.receivers.sink import StreamSink
from killkrill.receivers.syslog_framing import FrameSplitter
from killkrill.receivers.syslog_parser import parse_syslog

__all__ = ["SyslogServer"]

log = logging.getLogger(__name__)

_READ_SIZE = 256 * 1024
_UNAVAILABLE_PAUSE = 1.0


class SyslogServer:
    """Listens on the configured ports; :meth:`start`, then :meth:`stop` to drain."""

    def __init__(
        self, settings: SyslogSettings, sink: StreamSink, metrics: ReceiverMetrics
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.metrics = metrics
        self.tcp_port: int | None = None
        self.udp_port: int | None = None
        self.tls_port: int | None = None
        self._servers: list[asyncio.Server] = []
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._udp_queue: deque[tuple[bytes, datetime]] = deque()
        self._udp_wakeup = asyncio.Event()
        self._udp_task: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._format_counters = {
            (transport, fmt): metrics.syslog_messages.labels(transport=transport, format=fmt)
            for transport in ("udp", "tcp", "tls")
            for fmt in ("rfc5424", "rfc3164", "unparsed")
        }
        self._accepted = metrics.accepted.labels(kind="logs", protocol="syslog")

    async def start(self) -> None:
        """Bind every enabled listener (port 0 picks a free port; see ``*_port``)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        if s.tcp:
            server = await asyncio.start_server(
                lambda r, w: self._on_connection(r, w, "tcp"), s.host, s.port, limit=_READ_SIZE
            )
            self._servers.append(server)
            self.tcp_port = server.sockets[0].getsockname()[1]
        if s.udp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(s.host, self.tcp_port or s.port)
            )
            self._udp_transport = transport
            self.udp_port = transport.get_extra_info("sockname")[1]
            self._udp_task = asyncio.create_task(self._udp_writer(), name="syslog-udp-writer")
        if s.tls_port is not None and s.tls_cert is not None and s.tls_key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(s.tls_cert), str(s.tls_key))
            server = await asyncio.start_server(
                lambda r, w: self._on_connection(r, w, "tls"),
                s.host,
                s.tls_port,
                ssl=context,
                limit=_READ_SIZE,
            )
            self._servers.append(server)
            self.tls_port = server.sockets[0].getsockname()[1]
        log.info(
            "syslog receiver listening",
            extra={"tcp": self.tcp_port, "udp": self.udp_port, "tls": self.tls_port},
        )

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop accepting, let open connections finish what they read, flush UDP."""
        self._stopping.set()
        for server in self._servers:
            server.close()
        if self._udp_transport is not None:
            self._udp_transport.close()
        self._udp_wakeup.set()
        pending = [t for t in (*self._connections, self._udp_task) if t is not None]
        if pending:
            _, late = await asyncio.wait(pending, timeout=drain_timeout)
            for task in late:
                task.cancel()
            if late:
                log.error("syslog drain timed out; %d connections cut", len(late))
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    # -- TCP / TLS -------------------------------------------------------------------
    def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        task = asyncio.create_task(self._serve_connection(reader, writer, transport))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, transport: str
    ) -> None:
        splitter = FrameSplitter(self.settings.max_frame_bytes)
        received = self.metrics.received_bytes.labels(protocol=f"syslog-{transport}")
        oversized = self.metrics.syslog_oversized.labels(transport=transport)
        self.metrics.syslog_connections.inc()
        try:
            while True:
                try:
                    data = await reader.read(_READ_SIZE)
                except (ConnectionError, ssl.SSLError) as exc:
                    log.info("syslog connection closed by error: %s", exc)
                    break
                if not data:
                    break
                received.inc(len(data))
                frames = splitter.feed(data)
                if splitter.oversized:
                    oversized.inc(splitter.oversized)
                    splitter.oversized = 0
                if frames:
                    await self._write(frames, transport)
            last = splitter.flush()
            if splitter.oversized:
                oversized.inc(splitter.oversized)
            if last:
                await self._write([last], transport)
        finally:
            self.metrics.syslog_connections.dec()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- UDP -------------------------------------------------------------------------
    def _on_datagram(self, data: bytes) -> None:
        if len(data) > self.settings.max_frame_bytes:
            self.metrics.syslog_oversized.labels(transport="udp").inc()
            return
        if len(self._udp_queue) >= self.settings.udp_queue:
            self.metrics.syslog_udp_dropped.inc()
            return
        self._udp_queue.append((data, datetime.now(UTC)))
        self._udp_wakeup.set()

    async def _udp_writer(self) -> None:
        queue = self._udp_queue
        while True:
            if not queue:
                if self._stopping.is_set():
                    return
                self._udp_wakeup.clear()
                await self._udp_wakeup.wait()
                continue
            await asyncio.sleep(0)  # let a burst of datagrams queue up into one batch
            count = min(len(queue), self.settings.batch_size)
            batch = [queue.popleft() for _ in range(count)]
            await self._write_parsed([self._parse(frame, "udp", at) for frame, at in batch])
            self.metrics.received_bytes.labels(protocol="syslog-udp").inc(
                sum(len(frame) for frame, _ in batch)
            )

    # -- shared ----------------------------------------------------------------------
    def _parse(self, frame: bytes, transport: str, received_at: datetime) -> bytes:
        record = parse_syslog(
            frame,
            received_at=received_at,
            default_service=self.settings.default_service,
            rfc3164_tz=self.settings.rfc3164_zone,
        )
        self._format_counters[(transport, record.get("syslog_format", "unparsed"))].inc()
        return orjson.dumps(record)

    async def _write(self, frames: Sequence[bytes], transport: str) -> None:
        now = datetime.now(UTC)
        size = self.settings.batch_size
        for start in range(0, len(frames), size):
            chunk = frames[start : start + size]
            await self._write_parsed([self._parse(f, transport, now) for f in chunk])

    async def _write_parsed(self, payloads: list[bytes]) -> None:
        """Append, retrying for as long as Redis pushes back or is down: these messages
        were read off a socket and have no other copy."""
        paused_since: float | None = None
        while True:
            try:
                await self.sink.append("logs", payloads)
            except (Backpressure, ServiceUnavailable) as exc:
                if paused_since is None:
                    paused_since = time.monotonic()
                    log.warning("syslog paused: %s", exc)
                delay = exc.delay if isinstance(exc, Backpressure) else _UNAVAILABLE_PAUSE
                await asyncio.sleep(delay)
                continue
            break
        if paused_since is not None:
            self.metrics.syslog_paused.inc(time.monotonic() - paused_since)
            log.info("syslog resumed")
        self._accepted.inc(len(payloads))


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.server._on_datagram(data)
