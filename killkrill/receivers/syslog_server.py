"""The syslog server: UDP, TCP and TLS listeners feeding the shared stream sink.

TCP/TLS: each connection splits what it receives into frames at once and hands them to its
own writer task, which appends them to Redis in order. Past ``syslog.tcp_buffer_bytes`` of
frames not yet in Redis (the stream over its backlog limit, Redis down) the connection is
not read any more, so the kernel's buffers fill and TCP flow control slows the sender:
backpressure without loss. At most ``syslog.max_connections`` are open at once; one silent
for ``syslog.idle_timeout`` seconds is closed once its frames are written.

UDP cannot push back: datagrams wait in a queue bounded in bytes (``syslog.udp_queue_bytes``,
counting each message's bookkeeping too, and until Redis has them), and those that do not
fit are dropped and counted (``killkrill_receiver_syslog_udp_dropped_total``).

Every frame read ends as exactly one of: written, rejected (outside the record limits, e.g.
dated too far ahead; counted and logged) or lost (counted and logged). :meth:`SyslogServer.stop`
(SIGTERM) stops accepting and reading, writes every frame already read (TCP and the UDP
queue), then closes; only what Redis still refuses after ``syslog.drain_timeout`` seconds is
lost, together with a frame the shutdown cut in half.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import cast

import orjson

from killkrill.config import ReceiverSettings
from killkrill.errors import Backpressure, ConfigError, ServiceUnavailable, ValidationError
from killkrill.receivers.errors import RequestError
from killkrill.receivers.limits import record_limits
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.receivers.sink import Stream, StreamSink
from killkrill.receivers.syslog_framing import FrameSplitter
from killkrill.receivers.syslog_parser import parse_syslog
from killkrill.schemas import TimeWindow, check_log_limits

__all__ = ["FRAME_OVERHEAD", "SyslogServer"]

log = logging.getLogger(__name__)

FRAME_OVERHEAD = 128
"""Bytes of bookkeeping counted with each frame held in memory (its tuple, the bytes object
header and the arrival time), so a flood of tiny messages is bounded too."""

_UNAVAILABLE_PAUSE = 1.0
_LOG_EVERY = 10.0
"""Seconds between two warnings of one kind (refused connections, rejected records)."""

Frame = tuple[bytes, float]
"""A frame and the epoch time it arrived."""


class _Throttled:
    """A warning logged at most once per :data:`_LOG_EVERY` seconds, with a count."""

    def __init__(self, message: str) -> None:
        self.message = message
        self._last = 0.0
        self._count = 0

    def __call__(self, **extra: object) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last >= _LOG_EVERY:
            log.warning(self.message, extra={**extra, "count": self._count})
            self._last = now
            self._count = 0


class SyslogServer:
    """Listens on the configured ports; :meth:`start`, then :meth:`stop` to drain."""

    def __init__(
        self, settings: ReceiverSettings, sink: StreamSink, metrics: ReceiverMetrics
    ) -> None:
        self.settings = settings.syslog
        self.sink = sink
        self.metrics = metrics
        self.limits = record_limits(settings.limits)
        self._socket_timeout = settings.redis.socket_timeout
        try:
            self.stream: Stream = sink.resolve("logs")
        except RequestError:
            raise ConfigError(
                "the syslog server writes the log stream: add `logs` to `streams`"
            ) from None
        self.tcp_port: int | None = None
        self.udp_port: int | None = None
        self.tls_port: int | None = None
        self.read = 0
        self.written = 0
        self.rejected = 0
        self.lost = 0
        self._servers: list[asyncio.Server] = []
        self._udp_transport: asyncio.DatagramTransport | None = None
        self._udp_queue: deque[Frame] = deque()
        self._udp_bytes = 0
        self._udp_wakeup = asyncio.Event()
        self._udp_task: asyncio.Task[None] | None = None
        self._idle_task: asyncio.Task[None] | None = None
        self._connections: set[_Connection] = set()
        self._stopping = False
        self._give_up = asyncio.Event()
        self._format_counters = {
            (transport, fmt): metrics.syslog_messages.labels(transport=transport, format=fmt)
            for transport in ("udp", "tcp", "tls")
            for fmt in ("rfc5424", "rfc3164", "unparsed")
        }
        self._accepted = metrics.accepted.labels(kind="logs", protocol="syslog")
        self._invalid = metrics.rejected.labels(kind="logs", reason="invalid")
        self._warn_refused = _Throttled(
            "syslog connection refused: syslog.max_connections are open"
        )
        self._warn_rejected = _Throttled("syslog message rejected")

    async def start(self) -> None:
        """Bind every enabled listener (port 0 picks a free port; see ``*_port``)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        if s.tcp:
            server = await loop.create_server(lambda: _Connection(self, "tcp"), s.host, s.port)
            self._servers.append(server)
            self.tcp_port = server.sockets[0].getsockname()[1]
        if s.udp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self),
                local_addr=(
                    s.host,
                    s.udp_port if s.udp_port is not None else self.tcp_port or s.port,
                ),
            )
            self._udp_transport = transport
            self.udp_port = transport.get_extra_info("sockname")[1]
            self._udp_task = asyncio.create_task(self._udp_writer(), name="syslog-udp-writer")
        if s.tls_port is not None and s.tls_cert is not None and s.tls_key is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(s.tls_cert), str(s.tls_key))
            server = await loop.create_server(
                lambda: _Connection(self, "tls"), s.host, s.tls_port, ssl=context
            )
            self._servers.append(server)
            self.tls_port = server.sockets[0].getsockname()[1]
        if s.idle_timeout > 0 and self._servers:
            self._idle_task = asyncio.create_task(self._close_idle(), name="syslog-idle")
        log.info(
            "syslog receiver listening",
            extra={"tcp": self.tcp_port, "udp": self.udp_port, "tls": self.tls_port},
        )

    async def stop(self) -> None:
        """Stop accepting and reading, write every frame already read, then close.

        Frames Redis still refuses ``syslog.drain_timeout`` seconds later are counted as
        lost (``killkrill_receiver_syslog_lost_frames_total``) and logged.
        """
        self._stopping = True
        for server in self._servers:
            server.close()
        if self._udp_transport is not None:
            self._udp_transport.close()
        if self._idle_task is not None:
            self._idle_task.cancel()
        for connection in list(self._connections):
            connection.finish(partial_is_lost=True, say_goodbye=True)
        self._udp_wakeup.set()
        writers = [c.writer for c in self._connections if c.writer is not None]
        if self._udp_task is not None:
            writers.append(self._udp_task)
        if writers:
            _, late = await asyncio.wait(writers, timeout=self.settings.drain_timeout)
            if late:
                self._give_up.set()  # writers count what is left as lost and end
                for connection in list(self._connections):
                    connection.wakeup.set()  # one waiting for a cut frame's end, too
                # An append already sent ends within the Redis socket timeout.
                _, stuck = await asyncio.wait(late, timeout=self._socket_timeout + 1)
                for task in stuck:
                    task.cancel()
                if stuck:
                    log.error("syslog drain: %d writers did not end; cancelled", len(stuck))
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        summary = {
            "read": self.read,
            "written": self.written,
            "rejected": self.rejected,
            "lost": self.lost,
        }
        if self.lost:
            log.error("syslog receiver stopped; frames were lost", extra=summary)
        else:
            log.info("syslog receiver stopped", extra=summary)

    # -- TCP / TLS -------------------------------------------------------------------
    def _admit(self, connection: _Connection) -> bool:
        if self._stopping or len(self._connections) >= self.settings.max_connections:
            self.metrics.syslog_refused_connections.inc()
            if not self._stopping:
                self._warn_refused(limit=self.settings.max_connections)
            return False
        self._connections.add(connection)
        self.metrics.syslog_connections.inc()
        return True

    def _forget(self, connection: _Connection) -> None:
        if connection in self._connections:
            self._connections.discard(connection)
            self.metrics.syslog_connections.dec()

    async def _close_idle(self) -> None:
        timeout = self.settings.idle_timeout
        while True:
            await asyncio.sleep(min(timeout / 4, 1.0))
            now = time.monotonic()
            for connection in list(self._connections):
                if connection.idle_since(now) > timeout:
                    self.metrics.syslog_idle_closed.inc()
                    connection.finish(partial_is_lost=False, say_goodbye=False)

    # -- UDP -------------------------------------------------------------------------
    def _on_datagram(self, data: bytes) -> None:
        if len(data) > self.settings.max_frame_bytes:
            self.metrics.syslog_oversized.labels(transport="udp").inc()
            return
        cost = len(data) + FRAME_OVERHEAD
        if self._stopping or self._udp_bytes + cost > self.settings.udp_queue_bytes:
            self.metrics.syslog_udp_dropped.inc()
            return
        self._udp_bytes += cost
        self.metrics.syslog_udp_queued_bytes.set(self._udp_bytes)
        self._udp_queue.append((data, time.time()))
        self._count_read("udp", 1)
        self._udp_wakeup.set()

    async def _udp_writer(self) -> None:
        queue = self._udp_queue
        while True:
            if not queue:
                if self._stopping:
                    return
                self._udp_wakeup.clear()
                await self._udp_wakeup.wait()
                continue
            await asyncio.sleep(0)  # let a burst of datagrams queue up into one batch
            # Taken off the queue but still counted in its bytes until written.
            batch = [queue.popleft() for _ in range(min(len(queue), self.settings.batch_size))]
            try:
                await self.write(batch, "udp")
            except asyncio.CancelledError:  # the drain's last resort: the rest is lost
                self._lose(len(batch) + len(queue), "shutdown")
                raise
            finally:
                size = sum(len(frame) for frame, _ in batch)
                self._udp_bytes -= size + FRAME_OVERHEAD * len(batch)
                self.metrics.syslog_udp_queued_bytes.set(self._udp_bytes)
                self.metrics.received_bytes.labels(protocol="syslog-udp").inc(size)
            if self._give_up.is_set() and queue:
                self._lose(len(queue), "shutdown")
                queue.clear()

    # -- shared ----------------------------------------------------------------------
    def _count_read(self, transport: str, count: int) -> None:
        self.read += count
        self.metrics.syslog_frames_read.labels(transport=transport).inc(count)

    def _lose(self, count: int, reason: str) -> None:
        self.lost += count
        self.metrics.syslog_lost.labels(reason=reason).inc(count)

    def _records(self, frames: Iterable[Frame], transport: str) -> list[bytes]:
        """Parse ``frames`` and check them against the record limits (the parser's records
        are well formed: only the limits can refuse one); refused ones are counted."""
        s = self.settings
        service, zone, keep_raw = s.default_service, s.rfc3164_zone, s.keep_raw
        limits = self.limits
        window: TimeWindow | None = limits.window()
        max_bytes = limits.max_record_bytes
        payloads: list[bytes] = []
        formats: dict[str, int] = {}  # counted here, added to the metric once per batch
        arrived, received_at = 0.0, datetime.now(UTC)
        for frame, at in frames:
            if at != arrived:  # frames of one read share their arrival time
                arrived, received_at = at, datetime.fromtimestamp(at, UTC)
            record = parse_syslog(
                frame,
                received_at=received_at,
                default_service=service,
                rfc3164_tz=zone,
                keep_raw=keep_raw,
            )
            fmt = record.get("syslog_format", "unparsed")
            formats[fmt] = formats.get(fmt, 0) + 1
            try:
                check_log_limits(record, limits, window=window)
                payload = orjson.dumps(record)
                if max_bytes is not None and len(payload) > max_bytes:
                    raise ValidationError(
                        f"the record is {len(payload)} bytes as JSON; the limit is {max_bytes} "
                        "(limits.max_record_bytes)"
                    )
            except ValidationError as exc:
                self.rejected += 1
                self._invalid.inc()
                self._warn_rejected(reason=str(exc), transport=transport, raw=frame[:200])
                continue
            payloads.append(payload)
        for fmt, count in formats.items():
            self._format_counters[(transport, fmt)].inc(count)
        return payloads

    async def write(self, frames: list[Frame], transport: str) -> None:
        """Append ``frames`` (at most ``syslog.batch_size``), retrying for as long as Redis
        pushes back or is down: they were read off a socket and have no other copy. Once
        the drain after :meth:`stop` gives up they are counted as lost instead."""
        payloads = self._records(frames, transport)
        if not payloads:
            return
        paused_since: float | None = None
        try:
            while True:
                try:
                    await self.sink.append(self.stream, payloads)
                except (Backpressure, ServiceUnavailable) as exc:
                    if self._give_up.is_set():
                        log.error("syslog frames not written before the drain ended: %s", exc)
                        self._lose(len(payloads), "shutdown")
                        return
                    if paused_since is None:
                        paused_since = time.monotonic()
                        self.metrics.syslog_waiting_writes.inc()
                        log.warning("syslog paused: %s", exc)
                    delay = exc.delay if isinstance(exc, Backpressure) else _UNAVAILABLE_PAUSE
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._give_up.wait(), delay)
                    continue
                break
        finally:
            if paused_since is not None:
                self.metrics.syslog_waiting_writes.dec()
                self.metrics.syslog_paused.inc(time.monotonic() - paused_since)
        if paused_since is not None:
            log.info("syslog resumed")
        self.written += len(payloads)
        self._accepted.inc(len(payloads))


class _Connection(asyncio.Protocol):
    """One TCP/TLS connection: frames split as they arrive, written by :attr:`writer` in
    order; reading pauses past ``syslog.tcp_buffer_bytes`` not yet in Redis."""

    def __init__(self, server: SyslogServer, transport_name: str) -> None:
        self.server = server
        self.name = transport_name
        s = server.settings
        self.splitter = FrameSplitter(s.max_frame_bytes)
        self.frames: deque[Frame] = deque()
        self.buffered = 0
        self.limit = s.tcp_buffer_bytes
        self.transport: asyncio.Transport | None = None
        self.writer: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()
        self.paused = False
        self.ended = False  # the sender closed (or the connection broke)
        self.finishing = False  # stop or idle: no more reading
        self.completing = False  # finishing, but a frame is half read: read until it is whole
        self.partial_is_lost = False
        self.last_data = time.monotonic()
        metrics = server.metrics
        self._received = metrics.received_bytes.labels(protocol=f"syslog-{transport_name}")
        self._oversized = metrics.syslog_oversized.labels(transport=transport_name)

    # -- protocol callbacks (synchronous, on the event loop) --------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if not self.server._admit(self):
            self.transport.close()
            return
        self.writer = asyncio.create_task(self._write_loop(), name=f"syslog-{self.name}")

    def data_received(self, data: bytes) -> None:
        if self.writer is None or (self.finishing and not self.completing):
            return  # refused, or arriving after reading was stopped: never read
        self.last_data = time.monotonic()
        self._received.inc(len(data))
        frames = self.splitter.feed(data)
        if self.splitter.oversized:
            self._oversized.inc(self.splitter.oversized)
            self.splitter.oversized = 0
        if frames:
            at = time.time()
            self.frames.extend((frame, at) for frame in frames)
            self.buffered += sum(len(frame) for frame in frames) + FRAME_OVERHEAD * len(frames)
            self.server._count_read(self.name, len(frames))
            self.wakeup.set()
        if self.completing:
            if frames or not self.splitter.buffered:  # the frame the stop cut is whole
                # Read no more. What this read holds past the frames it completed began
                # after the stop: like the bytes still in the socket, it is left unread
                # (otherwise a sender that keeps sending is read on and on).
                self.splitter.drop_partial()
                self.completing = False
                with contextlib.suppress(RuntimeError, AttributeError):
                    self.transport.pause_reading()  # type: ignore[union-attr]
                self.wakeup.set()
            return
        # Only complete frames count: the rest of one still arriving must be read.
        if not self.paused and self.buffered > self.limit:
            self._pause()

    def eof_received(self) -> bool | None:
        self.ended = True
        self.wakeup.set()
        return None  # close our side too: nothing is ever written back

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not isinstance(exc, ConnectionError | ssl.SSLError):
            log.info("syslog connection lost: %s", exc)
        self.ended = True
        self.wakeup.set()
        if self.writer is None:
            return
        if self.paused:
            self.paused = False
            self.server.metrics.syslog_read_paused.dec()

    # -- state changes ----------------------------------------------------------------
    def finish(self, *, partial_is_lost: bool, say_goodbye: bool) -> None:
        """Read no more; the writer writes what was read and closes (stop, idle).

        ``say_goodbye`` half-closes the connection at once (TCP FIN): senders that check
        their connection before each message (rsyslog does) stop sending here and reconnect
        elsewhere, so less of what they send lands unread in this socket while it drains.
        """
        if self.finishing:
            return
        self.finishing = True
        self.partial_is_lost = partial_is_lost
        transport = self.transport
        # A frame half read is read to its end first (its start is read: it must not be
        # lost); the drain's deadline bounds the wait (then it is counted lost).
        self.completing = partial_is_lost and self.splitter.buffered > 0 and not self.ended
        if transport is not None and not transport.is_closing():
            with contextlib.suppress(RuntimeError, AttributeError):
                if self.completing:
                    transport.resume_reading()
                else:
                    transport.pause_reading()
            if say_goodbye and transport.can_write_eof():
                with contextlib.suppress(OSError, RuntimeError):
                    transport.write_eof()
        self.wakeup.set()

    def idle_since(self, now: float) -> float:
        """Seconds since data last arrived (0 while reading is paused by us)."""
        if self.paused or self.finishing:
            return 0.0
        return now - self.last_data

    def _pause(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
            self.paused = True
            self.server.metrics.syslog_read_paused.inc()

    def _resume(self) -> None:
        self.paused = False
        self.server.metrics.syslog_read_paused.dec()
        self.last_data = time.monotonic()
        if self.transport is not None and not self.transport.is_closing() and not self.finishing:
            self.transport.resume_reading()

    # -- the writer -------------------------------------------------------------------
    async def _write_loop(self) -> None:
        server = self.server
        size = server.settings.batch_size
        frames = self.frames
        batch: list[Frame] = []
        try:
            while True:
                if frames:
                    batch = [frames.popleft() for _ in range(min(len(frames), size))]
                    await server.write(batch, self.name)
                    self.buffered -= sum(len(f) for f, _ in batch) + FRAME_OVERHEAD * len(batch)
                    batch = []
                    if server._give_up.is_set() and frames:
                        server._lose(len(frames), "shutdown")
                        frames.clear()
                    if self.paused and self.buffered <= self.limit // 2:
                        self._resume()
                    continue
                if self.ended or (self.finishing and not self.completing):
                    break
                if self.completing and server._give_up.is_set():
                    break  # the cut frame did not come whole in time: lost, counted below
                self.wakeup.clear()
                await self.wakeup.wait()
            await self._last_frame()
        except asyncio.CancelledError:  # the drain's last resort: what was in hand is lost
            server._lose(len(batch) + len(frames), "shutdown")
            raise
        finally:
            if self.paused:
                self.paused = False
                server.metrics.syslog_read_paused.dec()
            server._forget(self)
            if self.transport is not None:
                self.transport.close()

    async def _last_frame(self) -> None:
        """The sender's unterminated last frame: written when it is all there will be
        (end of stream, idle close), lost when the shutdown cut it off."""
        if self.partial_is_lost and not self.ended:
            if self.splitter.buffered:
                self.server._count_read(self.name, 1)
                self.server._lose(1, "incomplete")
                log.warning(
                    "syslog shutdown cut a frame in half",
                    extra={"bytes": self.splitter.buffered},
                )
            return
        last = self.splitter.flush()
        if self.splitter.oversized:
            self._oversized.inc(self.splitter.oversized)
        if last:
            self.server._count_read(self.name, 1)
            await self.server.write([(last, time.time())], self.name)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SyslogServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.server._on_datagram(data)
