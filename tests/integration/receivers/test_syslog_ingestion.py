"""Syslog from real clients (util-linux `logger`, rsyslog) into the real logs-stream."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from killkrill.receivers.syslog_server import FRAME_OVERHEAD, SyslogServer

ReadStream = Callable[[str], list[dict[str, Any]]]
LOGGER = shutil.which("logger")
RSYSLOGD = shutil.which("rsyslogd")
OPENSSL = shutil.which("openssl")
needs_logger = pytest.mark.skipif(LOGGER is None, reason="logger not installed (Debian: bsdutils)")


async def wait_for(
    redis_client: redis.Redis, count: int, stream: str = "logs-stream", within: float = 15
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while redis_client.xlen(stream) < count:
        if loop.time() > deadline:
            raise AssertionError(f"{stream} has {redis_client.xlen(stream)} of {count} entries")
        await asyncio.sleep(0.05)


async def logger(*args: str) -> None:
    assert LOGGER is not None
    proc = await asyncio.create_subprocess_exec(LOGGER, *args, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


@needs_logger
@pytest.mark.parametrize("transport", ["--udp", "--tcp"])
async def test_logger_rfc5424(
    start_syslog: Callable[..., Any],
    redis_client: redis.Redis,
    read_stream: ReadStream,
    transport: str,
) -> None:
    server: SyslogServer = await start_syslog()
    await logger(
        "--server", "127.0.0.1", "--port", str(server.tcp_port), transport, "--rfc5424",
        "-t", "billing", "-i", "-p", "local3.warning", "--msgid", "INV42",
        "--sd-id", "order@32473", "--sd-param", 'id="981"', "--sd-param", 'total="12.50"',
        "invoice created",
    )  # fmt: skip
    await wait_for(redis_client, 1)
    [rec] = read_stream("logs-stream")
    assert rec["service"] == "billing"
    assert rec["level"] == "warn"
    assert rec["message"] == "invoice created"
    assert rec["facility"] == "local3"
    assert rec["msgid"] == "INV42"
    assert rec["hostname"] == socket.gethostname()
    assert rec["procid"].isdigit()
    assert rec["structured_data"]["order@32473"] == {"id": "981", "total": "12.50"}
    assert "timeQuality" in rec["structured_data"]
    assert rec["syslog_format"] == "rfc5424"
    assert rec["raw"].startswith("<156>1 ")


@needs_logger
@pytest.mark.parametrize("transport", ["--udp", "--tcp"])
async def test_logger_rfc3164(
    start_syslog: Callable[..., Any],
    redis_client: redis.Redis,
    read_stream: ReadStream,
    transport: str,
) -> None:
    server: SyslogServer = await start_syslog()
    await logger(
        "--server", "127.0.0.1", "--port", str(server.tcp_port), transport, "--rfc3164",
        "-t", "sshd", "-i", "-p", "auth.err", "Failed password for root",
    )  # fmt: skip
    await wait_for(redis_client, 1)
    [rec] = read_stream("logs-stream")
    assert (rec["service"], rec["level"], rec["facility"]) == ("sshd", "error", "auth")
    assert rec["message"] == "Failed password for root"
    assert rec["procid"].isdigit()
    assert rec["hostname"] == socket.gethostname()
    assert rec["syslog_format"] == "rfc3164"


@needs_logger
async def test_logger_octet_counting_many_lines_in_order(
    start_syslog: Callable[..., Any],
    redis_client: redis.Redis,
    read_stream: ReadStream,
    tmp_path: Path,
) -> None:
    server: SyslogServer = await start_syslog()
    lines = tmp_path / "lines.txt"
    lines.write_text("".join(f"line {i} with\ttab\n" for i in range(500)))
    await logger(
        "--server", "127.0.0.1", "--port", str(server.tcp_port), "--tcp", "--octet-count",
        "--rfc5424=notq", "-t", "batch", "-f", str(lines),
    )  # fmt: skip
    await wait_for(redis_client, 500)
    stored = read_stream("logs-stream")
    assert [r["message"] for r in stored] == [f"line {i} with\ttab" for i in range(500)]
    assert all("structured_data" not in r for r in stored)


async def test_mixed_framing_oversized_and_garbage_over_raw_tcp(
    start_syslog: Callable[..., Any], redis_client: redis.Redis, read_stream: ReadStream
) -> None:
    server: SyslogServer = await start_syslog(**{"syslog.max_frame_bytes": 1000})
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    big = b"<13>" + b"x" * 2000
    writer.write(
        b"<13>Jan  2 03:04:05 host app: lf framed\n"
        + f"{len(big)} ".encode() + big
        + b"not syslog at all \xff\n"
        + b"<13>1 2024-01-06T12:00:00Z h app - - - after\n"
    )  # fmt: skip
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await wait_for(redis_client, 3)
    stored = read_stream("logs-stream")
    assert [r["message"] for r in stored] == ["lf framed", "not syslog at all \ufffd", "after"]
    assert stored[1]["parse_error"] == "no <PRI> at the start"
    assert stored[1]["raw"] == "not syslog at all \\xff"
    oversized = server.metrics.syslog_oversized.labels(transport="tcp")._value.get()
    assert oversized == 1


async def wait_until(
    check: Callable[[], object], what: str, within: float = 20, interval: float = 0.01
) -> None:
    """Let the server run until ``check()`` is true (the test and the server share a loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def drain(
    aredis: aioredis.Redis, until: Callable[[list[str]], object], within: float = 60
) -> list[str]:
    """Act as the worker: read and delete logs-stream entries until ``until(messages)``."""
    seen: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not until(seen):
        if loop.time() > deadline:
            raise AssertionError(f"drained {len(seen)} messages, not all expected")
        entries = await aredis.xrange("logs-stream")
        seen.extend(orjson.loads(fields[b"data"]).get("message", "") for _, fields in entries)
        if entries:
            await aredis.xdel("logs-stream", *(entry_id for entry_id, _ in entries))
        else:
            await asyncio.sleep(0.005)
    return seen


def value(metric: Any, **labels: str) -> float:
    child = metric.labels(**labels) if labels else metric
    return float(child._value.get())


async def test_tcp_backpressure_pauses_reading_and_loses_nothing(
    start_syslog: Callable[..., Any], aredis: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """With the stream at its backlog limit the server stops reading the connection (TCP
    flow control then holds the sender back); once a worker drains the stream every message
    arrives, in order, none twice."""
    server: SyslogServer = await start_syslog(
        **{"backpressure.max_backlog": 50, "backpressure.retry_after": 0.01,
           "syslog.batch_size": 10, "syslog.tcp_buffer_bytes": 4096}
    )  # fmt: skip
    lines = [f"<14>1 2024-01-06T12:00:00Z h app - - - msg {i:05d}\n".encode() for i in range(20000)]
    sent = sum(len(line) for line in lines)
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)

    async def send() -> None:
        for start in range(0, len(lines), 500):
            writer.write(b"".join(lines[start : start + 500]))
            await writer.drain()

    sender = asyncio.create_task(send())
    metrics = server.metrics
    await wait_until(
        lambda: value(metrics.syslog_waiting_writes) == 1 and value(metrics.syslog_read_paused),
        "a batch to wait for the full stream and reading to pause",
    )
    # Held back at the limit: the waiting batch of 10 would pass 50.
    assert 40 < redis_client.xlen("logs-stream") <= 50
    read = value(metrics.received_bytes, protocol="syslog-tcp")
    assert 0 < read < sent, "the paused server has not read what was sent"
    seen = await drain(aredis, lambda seen: len(seen) >= len(lines))
    await sender
    writer.close()
    await writer.wait_closed()
    assert seen == [f"msg {i:05d}" for i in range(20000)]
    assert value(metrics.syslog_paused) > 0, "the pause was measured"
    assert value(metrics.syslog_read_paused) == 0


async def test_udp_queue_is_bounded_in_bytes_and_drops_are_counted(
    start_syslog: Callable[..., Any], redis_client: redis.Redis, aredis: aioredis.Redis
) -> None:
    """While Redis refuses writes, UDP messages wait in memory up to syslog.udp_queue_bytes
    (each counted with its bookkeeping); exactly the ones that do not fit are dropped."""
    server: SyslogServer = await start_syslog(
        **{"syslog.udp_queue_bytes": 65536, "backpressure.max_backlog": 1,
           "backpressure.retry_after": 0.05}
    )  # fmt: skip
    redis_client.xadd("logs-stream", {"data": b"{}"})  # the stream is "full" from the start
    metrics = server.metrics
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", server.udp_port)
    )
    size = 32
    fits = 65536 // (size + FRAME_OVERHEAD)  # 409
    sent = 500

    def handled() -> float:
        return value(metrics.syslog_frames_read, transport="udp") + value(
            metrics.syslog_udp_dropped
        )

    for i in range(sent):  # one at a time, so the kernel's own buffer never drops any
        transport.sendto(f"<14>udp {i:03d}".encode().ljust(size, b"."))
        await wait_until(lambda n=i + 1: handled() == n, f"datagram {i}", interval=0)
    transport.close()
    assert value(metrics.syslog_frames_read, transport="udp") == fits
    assert value(metrics.syslog_udp_dropped) == sent - fits
    assert value(metrics.syslog_udp_queued_bytes) == fits * (size + FRAME_OVERHEAD)
    stored = await drain(aredis, lambda seen: len(seen) >= fits + 1)
    assert stored == ["", *(f"udp {i:03d}".ljust(size - 4, ".") for i in range(fits))]
    assert value(metrics.accepted, kind="logs", protocol="syslog") == fits
    assert value(metrics.syslog_udp_queued_bytes) == 0


async def test_a_connection_past_the_cap_is_closed_and_counted(
    start_syslog: Callable[..., Any], redis_client: redis.Redis
) -> None:
    server: SyslogServer = await start_syslog(**{"syslog.max_connections": 2})
    metrics = server.metrics
    kept = [await asyncio.open_connection("127.0.0.1", server.tcp_port) for _ in range(2)]
    await wait_until(lambda: value(metrics.syslog_connections) == 2, "two connections")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    assert await asyncio.wait_for(reader.read(), 10) == b"", "the third was closed"
    writer.close()
    assert value(metrics.syslog_refused_connections) == 1
    for i, (_r, w) in enumerate(kept):
        w.write(f"<14>1 2024-01-06T12:00:00Z h app - - - kept {i}\n".encode())
        await w.drain()
    await wait_for(redis_client, 2)
    for _r, w in kept:
        w.close()
    await wait_until(lambda: value(metrics.syslog_connections) == 0, "connections to close")


async def test_an_idle_connection_is_closed_after_its_frames_are_written(
    start_syslog: Callable[..., Any], read_stream: ReadStream
) -> None:
    server: SyslogServer = await start_syslog(**{"syslog.idle_timeout": 0.5})
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    writer.write(b"<14>1 2024-01-06T12:00:00Z h app - - - whole\n<14>unterminated last line")
    await writer.drain()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await asyncio.wait_for(reader.read(), 10) == b"", "the server closed it"
    assert loop.time() - started >= 0.4  # not before the idle time
    writer.close()
    assert [r["message"] for r in read_stream("logs-stream")] == [
        "whole",
        "unterminated last line",
    ]
    assert value(server.metrics.syslog_idle_closed) == 1


async def test_syslog_applies_the_record_limits(
    start_syslog: Callable[..., Any], redis_client: redis.Redis, read_stream: ReadStream
) -> None:
    """A message dated beyond limits.max_future_seconds is rejected and counted, like over
    HTTP (a sender's wrong clock would otherwise open far-future daily indices)."""
    server: SyslogServer = await start_syslog(**{"limits.max_message_length": 10})
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    writer.write(
        b"<14>1 2999-01-06T12:00:00Z h app - - - from the future\n"
        b"<14>1 2024-01-06T12:00:00Z h app - - - far too long a message\n"
        b"<14>1 2024-01-06T12:00:00Z h app - - - fine\n"
    )
    await writer.drain()
    await wait_for(redis_client, 1)
    rejected = server.metrics.rejected.labels(kind="logs", reason="invalid")
    await wait_until(lambda: rejected._value.get() == 2, "two rejections")
    writer.close()
    assert [r["message"] for r in read_stream("logs-stream")] == ["fine"]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost/127.0.0.1 and its key (PEM)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [str(OPENSSL), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.mark.skipif(OPENSSL is None, reason="openssl not installed")
async def test_tls_rfc5425(
    start_syslog: Callable[..., Any],
    redis_client: redis.Redis,
    read_stream: ReadStream,
    tmp_path: Path,
) -> None:
    cert, key = _self_signed(tmp_path)
    server: SyslogServer = await start_syslog(
        **{"syslog.tls_port": 0, "syslog.tls_cert": str(cert), "syslog.tls_key": str(key)}
    )
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.tls_port, ssl=context)
    message = b"<13>1 2024-01-06T12:00:00Z host app 1 - - over tls"
    writer.write(f"{len(message)} ".encode() + message)
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    await wait_for(redis_client, 1)
    assert read_stream("logs-stream")[0]["message"] == "over tls"


def _udp_port_taken(port: int) -> bool:
    """Whether some process has bound UDP ``port`` on loopback (our own bind fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


async def _relay_through_rsyslog(
    conf_text: str,
    tmp_path: Path,
    inport: int,
    redis_client: redis.Redis,
    messages: list[str],
    *logger_args: str,
) -> bytes:
    """Run rsyslogd with ``conf_text``, send ``messages`` to its UDP input with ``logger``
    and wait until the receiver has them all; return rsyslogd's stderr."""
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(conf_text)
    assert RSYSLOGD is not None
    proc = await asyncio.create_subprocess_exec(
        RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _udp_port_taken(inport):  # rsyslog binds its UDP input
            assert proc.returncode is None and time.monotonic() < deadline, "rsyslogd did not bind"
            await asyncio.sleep(0.05)
        for message in messages:
            await logger("--server", "127.0.0.1", "--port", str(inport), "--udp",
                         "--rfc5424=notq", *logger_args, message)  # fmt: skip
        await wait_for(redis_client, len(messages), within=20)
    finally:
        proc.terminate()
        _, stderr = await proc.communicate()
    return stderr


RSYSLOG_CONF = """
global(workDirectory="{workdir}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{inport}")
*.* action(type="omfwd" target="127.0.0.1" port="{outport}" protocol="tcp"
           template="{template}" {framing})
"""


@pytest.mark.slow
@pytest.mark.skipif(
    RSYSLOGD is None or LOGGER is None,
    reason="rsyslogd/logger not installed (Debian: rsyslog, bsdutils)",
)
@pytest.mark.parametrize(
    ("template", "framing"),
    [
        ("RSYSLOG_SyslogProtocol23Format", 'TCP_Framing="octet-counted"'),
        ("RSYSLOG_ForwardFormat", ""),
    ],
    ids=["rfc5424-octet-counted", "forward-format-lf"],
)
async def test_rsyslog_forwarding(
    start_syslog: Callable[..., Any],
    redis_client: redis.Redis,
    read_stream: ReadStream,
    tmp_path: Path,
    free_port: Callable[[], int],
    template: str,
    framing: str,
) -> None:
    """logger -> rsyslog (UDP in) -> forwarded over TCP -> receiver."""
    server: SyslogServer = await start_syslog()
    inport = free_port()
    conf = RSYSLOG_CONF.format(
        workdir=tmp_path,
        inport=inport,
        outport=server.tcp_port,
        template=template,
        framing=framing,
    )
    messages = [f"relayed message {i}" for i in range(20)]
    await _relay_through_rsyslog(
        conf, tmp_path, inport, redis_client, messages, "-t", "relayed", "-p", "user.err"
    )
    stored = read_stream("logs-stream")
    assert sorted(r["message"] for r in stored) == sorted(
        f"relayed message {i}" for i in range(20)
    ), stored[0]["raw"]
    assert {r["service"] for r in stored} == {"relayed"}
    assert {r["level"] for r in stored} == {"error"}
    assert {r["hostname"] for r in stored} <= {socket.gethostname(), "localhost", "127.0.0.1"}


RSYSLOG_TLS_CONF = """
global(workDirectory="{workdir}" DefaultNetstreamDriverCAFile="{cert}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{inport}")
*.* action(type="omfwd" target="127.0.0.1" port="{outport}" protocol="tcp"
           StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/certvalid"
           template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
"""
GTLS_DRIVER = next(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"), None)


@pytest.mark.slow
@pytest.mark.skipif(
    RSYSLOGD is None or LOGGER is None or OPENSSL is None or GTLS_DRIVER is None,
    reason="rsyslogd with TLS, logger or openssl missing (Debian: rsyslog-gnutls, bsdutils)",
)
async def test_rsyslog_forwarding_over_tls(
    start_syslog: Callable[..., Any],
    redis_client: redis.Redis,
    read_stream: ReadStream,
    tmp_path: Path,
    free_port: Callable[[], int],
) -> None:
    """logger -> rsyslog -> RFC 5425 (TLS, certificate verified by rsyslog) -> receiver."""
    cert, key = _self_signed(tmp_path)
    server: SyslogServer = await start_syslog(
        **{"syslog.tls_port": 0, "syslog.tls_cert": str(cert), "syslog.tls_key": str(key)}
    )
    inport = free_port()
    conf = RSYSLOG_TLS_CONF.format(
        workdir=tmp_path, cert=cert, inport=inport, outport=server.tls_port
    )
    messages = [f"tls message {i}" for i in range(10)]
    stderr = await _relay_through_rsyslog(
        conf, tmp_path, inport, redis_client, messages, "-t", "secure", "-p", "auth.warning"
    )
    stored = read_stream("logs-stream")
    assert sorted(r["message"] for r in stored) == sorted(f"tls message {i}" for i in range(10)), (
        stderr.decode()[-2000:]
    )
    assert {(r["service"], r["level"], r["facility"]) for r in stored} == {
        ("secure", "warn", "auth")
    }


async def test_a_frame_larger_than_the_connection_buffer_still_arrives(
    start_syslog: Callable[..., Any], read_stream: ReadStream, redis_client: redis.Redis
) -> None:
    """The buffer bound pauses reading for frames waiting on Redis, never for the rest of
    a frame still arriving (that would wait for ever)."""
    server: SyslogServer = await start_syslog(**{"syslog.tcp_buffer_bytes": 1024})
    message = b"<14>1 2024-01-06T12:00:00Z h app - - - " + b"x" * 5000
    frame = f"{len(message)} ".encode() + message
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    writer.write(frame[:3000])
    await writer.drain()
    received = server.metrics.received_bytes.labels(protocol="syslog-tcp")
    await wait_until(lambda: received._value.get() == 3000, "the first part to be read")
    writer.write(frame[3000:] + b"<14>1 2024-01-06T12:00:00Z h app - - - next\n")
    await writer.drain()
    await wait_for(redis_client, 2)
    writer.close()
    assert [len(r["message"]) for r in read_stream("logs-stream")] == [5000, 4]


@needs_logger
async def test_the_lean_record_has_no_raw(
    start_syslog: Callable[..., Any], redis_client: redis.Redis, read_stream: ReadStream
) -> None:
    """``syslog.keep_raw: false``: what logger sent, every field but ``raw``."""
    server: SyslogServer = await start_syslog(**{"syslog.keep_raw": False})
    await logger(
        "--server", "127.0.0.1", "--port", str(server.tcp_port), "--tcp", "--rfc5424",
        "-t", "billing", "--msgid", "INV42", "invoice created",
    )  # fmt: skip
    await wait_for(redis_client, 1)
    [rec] = read_stream("logs-stream")
    assert (rec["service"], rec["msgid"], rec["message"]) == ("billing", "INV42", "invoice created")
    assert "raw" not in rec
