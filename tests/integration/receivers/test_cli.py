"""`killkrill receiver http|syslog` as real processes: serve, log JSON, exit 0 on SIGTERM."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import redis

LOG = {"timestamp": "2024-01-06T12:00:00Z", "service": "api", "level": "info", "message": "m"}


def test_http_receiver_process(
    receiver_process: Callable[..., Any], redis_client: redis.Redis, port: int
) -> None:
    proc = receiver_process(
        "http", "--no-auth", "--host", "127.0.0.1", "--port", str(port),
        health_url=f"http://127.0.0.1:{port}/healthz",
    )  # fmt: skip
    response = httpx.post(f"http://127.0.0.1:{port}/api/v1/logs", json=[LOG] * 10)
    assert response.status_code == 200
    assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    assert redis_client.xlen("logs-stream") == 10
    assert proc.stop() == 0
    lines = [orjson.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    assert any("authentication is OFF" in line["msg"] for line in lines)
    assert lines[-1]["msg"] == "stopped"


def test_syslog_receiver_process(
    receiver_process: Callable[..., Any],
    redis_client: redis.Redis,
    port: int,
    free_port: Callable[[], int],
) -> None:
    ops = free_port()
    proc = receiver_process(
        "syslog", "--host", "127.0.0.1", "--port", str(port), "--ops-port", str(ops),
        health_url=f"http://127.0.0.1:{ops}/healthz",
    )  # fmt: skip
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"".join(b"<13>1 2024-01-06T12:00:00Z h app - - - m%d\n" % i for i in range(100))
        )
    deadline = time.monotonic() + 10
    while redis_client.xlen("logs-stream") < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert redis_client.xlen("logs-stream") == 100
    metrics = httpx.get(f"http://127.0.0.1:{ops}/metrics").text
    assert (
        'killkrill_receiver_syslog_messages_total{format="rfc5424",transport="tcp"} 100.0'
        in metrics
    )
    assert httpx.get(f"http://127.0.0.1:{ops}/readyz").status_code == 200
    assert proc.stop() == 0
