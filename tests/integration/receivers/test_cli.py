"""`killkrill receiver http|syslog` as real processes: serve, log JSON, exit 0 on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
import redis
from polling import wait_for

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
    proc.proc.send_signal(signal.SIGHUP)  # no keys here: ignored, never fatal
    wait_for(lambda: "SIGHUP ignored" in proc.output(), 10, "the SIGHUP to be logged")
    assert proc.stop() == 0


def test_docs_and_metrics_can_be_kept_off_the_ingest_port(
    receiver_process: Callable[..., Any], port: int
) -> None:
    proc = receiver_process(
        "http", "--no-auth", "--host", "127.0.0.1", "--port", str(port),
        env={"KILLKRILL_HTTP__EXPOSE_DOCS_AND_METRICS": "false"},
    )  # fmt: skip
    ingest, ops = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{proc.ops_port}"
    assert httpx.post(f"{ingest}/api/v1/logs", json=LOG).status_code == 200
    for path in ("/docs", "/openapi.json", "/metrics", "/redoc"):
        assert httpx.get(ingest + path).status_code == 404, path
    assert httpx.get(f"{ingest}/readyz").status_code == 200  # probes stay on both ports
    assert httpx.get(f"{ops}/readyz").status_code == 200
    assert "swagger-ui" in httpx.get(f"{ops}/docs").text
    assert "/api/v1/logs" in httpx.get(f"{ops}/openapi.json").json()["paths"]
    metrics = httpx.get(f"{ops}/metrics").text
    assert 'killkrill_receiver_accepted_records_total{kind="logs",protocol="http"} 1.0' in metrics
    assert proc.stop() == 0


def test_one_process_serves_http_and_syslog_with_one_ops_port_and_registry(
    receiver_process: Callable[..., Any],
    redis_client: redis.Redis,
    port: int,
    free_port: Callable[[], int],
) -> None:
    syslog_port = free_port()
    proc = receiver_process(
        "all", "--no-auth",
        env={
            "KILLKRILL_HTTP__HOST": "127.0.0.1", "KILLKRILL_HTTP__PORT": str(port),
            "KILLKRILL_SYSLOG__HOST": "127.0.0.1", "KILLKRILL_SYSLOG__PORT": str(syslog_port),
        },
    )  # fmt: skip
    assert httpx.post(f"http://127.0.0.1:{port}/api/v1/logs", json=LOG).status_code == 200
    with socket.create_connection(("127.0.0.1", syslog_port)) as sock:
        sock.sendall(b"<13>1 2024-01-06T12:00:00Z h app - - - over syslog\n")
    wait_for(lambda: redis_client.xlen("logs-stream") == 2, 10, "both records")
    for base in (f"http://127.0.0.1:{proc.ops_port}", f"http://127.0.0.1:{port}"):
        metrics = httpx.get(f"{base}/metrics").text
        assert 'kind="logs",protocol="http"} 1.0' in metrics
        assert 'kind="logs",protocol="syslog"} 1.0' in metrics
    assert proc.stop() == 0


@pytest.mark.parametrize("command", [["receiver", "http"], ["worker", "logs"]])
def test_an_unknown_log_level_is_a_setting_error(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "killkrill", *command, "--log-level", "loud"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "log_level" in done.stderr and "'debug', 'info', 'warning' or 'error'" in done.stderr
    assert "Traceback" not in done.stderr
