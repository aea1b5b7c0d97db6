"""SIGTERM of a syslog receiver while rsyslog holds its connection open (defect 5): the
receiver stops reading, writes every frame it had read, and exits 0 having lost none. A
frame the stop cuts in half (its start read, the rest still arriving) is read to its end
and written too; only when its end does not come before ``syslog.drain_timeout`` is it
counted lost."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from polling import wait_for

RSYSLOGD = shutil.which("rsyslogd")
LOGGER = shutil.which("logger")

RSYSLOG_RELAY = """
global(workDirectory="{workdir}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{inport}")
*.* action(type="omfwd" target="127.0.0.1" port="{outport}" protocol="tcp"
           template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted")
"""


def _metric(text: str, name: str) -> float:
    """Sum of the samples of ``name`` in a Prometheus exposition."""
    return sum(
        float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


def _connectable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


FRAME = b"<14>1 2026-12-02T10:00:00Z host app - - - message %d"


def _octets(n: int) -> bytes:
    body = FRAME % n
    return b"%d %b" % (len(body), body)


async def test_a_frame_cut_by_the_stop_is_read_to_its_end_and_written(
    start_syslog: Callable[..., Any], redis_client: redis.Redis
) -> None:
    server = await start_syslog()
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    second = _octets(2)
    writer.write(_octets(1) + second[:20])
    await writer.drain()
    await _until(lambda: server.read == 1)
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.2)  # the stop has begun: it waits for the cut frame's end
    assert not stopping.done()
    writer.write(second[20:])
    await writer.drain()
    await asyncio.wait_for(stopping, 10)
    assert (server.read, server.written, server.lost) == (2, 2, 0)
    messages = [orjson.loads(f[b"data"])["message"] for _, f in redis_client.xrange("logs-stream")]
    assert messages == ["message 1", "message 2"]
    writer.close()


async def test_reading_stops_once_the_cut_frame_is_whole_though_the_sender_goes_on(
    start_syslog: Callable[..., Any], redis_client: redis.Redis
) -> None:
    """The read that completes the cut frame ends the reading, though it ends in the middle
    of a later frame: a sender that keeps sending is not read on until the drain deadline."""
    server = await start_syslog(**{"syslog.drain_timeout": 5})
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    frames = [_octets(n) for n in range(1, 6)]
    writer.write(frames[0] + frames[1][:20])
    await writer.drain()
    await _until(lambda: server.read == 1)
    started = time.monotonic()
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.2)  # the stop has begun: it waits for the cut frame's end
    writer.write(frames[1][20:] + frames[2] + frames[3][:10])
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.write(frames[3][10:] + frames[4])  # sent after the cut frame came whole
    await writer.drain()
    await asyncio.wait_for(stopping, 10)
    assert time.monotonic() - started < 3, "the stop did not wait for its drain deadline"
    # Frame 2 completed the cut; frame 3 came in the same read (TCP may have split it).
    assert server.read in (2, 3) and server.written == server.read and server.lost == 0
    messages = [orjson.loads(f[b"data"])["message"] for _, f in redis_client.xrange("logs-stream")]
    assert messages == [f"message {n}" for n in range(1, server.read + 1)]
    writer.close()


async def test_a_cut_frame_whose_end_never_comes_is_counted_lost_at_the_deadline(
    start_syslog: Callable[..., Any], redis_client: redis.Redis
) -> None:
    server = await start_syslog(**{"syslog.drain_timeout": 0.5})
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    writer.write(_octets(1) + _octets(2)[:20])
    await writer.drain()
    await _until(lambda: server.read == 1)
    started = time.monotonic()
    await asyncio.wait_for(server.stop(), 10)
    assert time.monotonic() - started < 5
    assert (server.read, server.written, server.lost) == (2, 1, 1)  # said, never silent
    assert redis_client.xlen("logs-stream") == 1
    writer.close()


async def _until(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _drain(client: redis.Redis, seen: list[str]) -> int:
    """Act as the worker once: read and delete what logs-stream holds."""
    entries = client.xrange("logs-stream")
    seen.extend(orjson.loads(fields[b"data"])["message"] for _, fields in entries)
    if entries:
        client.xdel("logs-stream", *(entry_id for entry_id, _ in entries))
    return len(entries)


@pytest.mark.slow
@pytest.mark.skipif(
    RSYSLOGD is None or LOGGER is None,
    reason="rsyslogd/logger not installed (Debian: rsyslog, bsdutils)",
)
def test_sigterm_writes_every_frame_read_while_rsyslog_holds_the_connection(
    receiver_process: Callable[..., Any],
    redis_client: redis.Redis,
    tmp_path: Path,
    free_port: Callable[[], int],
) -> None:
    port, inport = free_port(), free_port()
    proc = receiver_process(
        "syslog", "--host", "127.0.0.1", "--port", str(port), "--no-udp",
        env={
            # The stream fills up: the receiver holds frames it read, and stops reading.
            "KILLKRILL_BACKPRESSURE__MAX_BACKLOG": "200",
            "KILLKRILL_BACKPRESSURE__RETRY_AFTER": "0.05",
            "KILLKRILL_SYSLOG__BATCH_SIZE": "50",
            "KILLKRILL_SYSLOG__TCP_BUFFER_BYTES": "16384",
        },
    )  # fmt: skip
    ops = f"http://127.0.0.1:{proc.ops_port}/metrics"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(RSYSLOG_RELAY.format(workdir=tmp_path, inport=inport, outport=port))
    assert RSYSLOGD is not None and LOGGER is not None
    rsyslog = subprocess.Popen(
        [RSYSLOGD, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslog.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: _connectable(inport), 30, "rsyslog's TCP input")
        lines = tmp_path / "lines.txt"
        sent = [f"held message {i:05d}" for i in range(20000)]
        lines.write_text("\n".join(sent) + "\n")
        subprocess.run(
            [LOGGER, "--server", "127.0.0.1", "--port", str(inport), "--tcp",
             "--rfc5424=notq", "-t", "relayed", "-f", str(lines)],
            check=True, timeout=60,
        )  # fmt: skip

        def held() -> float | None:
            """Frames read once a batch waits for the full stream and reading is paused:
            nobody drains the stream, so nothing more is read and the count is final."""
            text = httpx.get(ops).text
            waiting = _metric(text, "killkrill_receiver_syslog_waiting_writes")
            paused = _metric(text, "killkrill_receiver_syslog_read_paused_connections")
            if waiting == 1 and paused == 1:
                return _metric(text, "killkrill_receiver_syslog_read_frames_total")
            return None

        read_before = wait_for(held, 30, "the receiver to hold frames with reading paused")
        assert read_before > 200, "frames are held beyond what the stream took"
        assert rsyslog.poll() is None, "rsyslog holds its connection open"
        proc.proc.send_signal(signal.SIGTERM)
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while proc.proc.poll() is None and time.monotonic() < deadline:
            if not _drain(redis_client, seen):
                time.sleep(0.02)
        _drain(redis_client, seen)
        assert proc.stop() == 0
    finally:
        rsyslog.terminate()
        rsyslog.wait(20)
    lines_out = [orjson.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    [summary] = [line for line in lines_out if line["msg"].startswith("syslog receiver stopped")]
    assert summary["lost"] == 0 and summary["rejected"] == 0, summary
    # After SIGTERM only what completed a frame cut in half was read (the rest of it, and
    # the frames of the same read: one socket read is up to 256 KiB, some 3,000 of these
    # frames with their RFC 5424 header, over 30 bytes); everything read is in Redis, once.
    one_read = 256 * 1024 // (min(len(line) for line in sent) + 30)
    assert read_before <= summary["read"] <= read_before + one_read, summary
    assert summary["written"] == summary["read"] == len(seen)
    assert len(set(seen)) == len(seen) and set(seen) <= set(sent)
    assert seen == sorted(seen), "in the order rsyslog sent them"
