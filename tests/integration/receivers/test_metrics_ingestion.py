"""POST /api/v1/metrics (JSON and Prometheus text) and remote_write, into metrics-stream."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
import redis

from killkrill.receivers.remote_write import encode_write_request

ReadStream = Callable[[str], list[dict[str, Any]]]

SAMPLE = {
    "name": "http_request_duration_seconds",
    "value": 0.125,
    "labels": {"method": "GET", "endpoint": "/api/v1/users"},
    "timestamp": 1704542400,
    "type": "gauge",
}


async def test_json_samples(client: httpx.AsyncClient, read_stream: ReadStream) -> None:
    batch = [SAMPLE, {"name": "up", "value": 1}, {**SAMPLE, "timestamp": "2024-01-06T12:00:01Z"}]
    response = await client.post("/api/v1/metrics", json=batch)
    assert response.json() == {"accepted": 3, "rejected": 0}
    stored = read_stream("metrics-stream")
    assert stored[0] == {**SAMPLE, "timestamp": "2024-01-06T12:00:00.000000Z"}
    assert stored[1]["labels"] == {} and stored[1]["type"] == "untyped"
    assert stored[1]["timestamp"].endswith("Z")  # defaulted to now
    assert stored[2]["timestamp"] == "2024-01-06T12:00:01.000000Z"


async def test_prometheus_text_format(client: httpx.AsyncClient, read_stream: ReadStream) -> None:
    body = (
        b"# HELP http_requests_total Requests.\n"
        b"# TYPE http_requests_total counter\n"
        b'http_requests_total{method="post",code="200"} 1027 1704542400000\n'
        b"# TYPE latency_seconds histogram\n"
        b'latency_seconds_bucket{le="0.5"} 3\n'
        b'latency_seconds_bucket{le="+Inf"} 4\n'
        b"latency_seconds_sum 1.5\n"
        b"latency_seconds_count 4\n"
        b"temperature_celsius -3.5\n"
    )
    response = await client.post(
        "/api/v1/metrics", content=body, headers={"content-type": "text/plain; version=0.0.4"}
    )
    assert response.json() == {"accepted": 6, "rejected": 0}
    stored = read_stream("metrics-stream")
    assert stored[0] == {
        "name": "http_requests_total",
        "value": 1027.0,
        "labels": {"method": "post", "code": "200"},
        "timestamp": "2024-01-06T12:00:00.000000Z",
        "type": "counter",
    }
    assert [s["type"] for s in stored[1:5]] == ["histogram"] * 4
    assert stored[2]["labels"] == {"le": "+Inf"}
    assert stored[5]["value"] == -3.5 and stored[5]["type"] == "untyped"


async def test_summary_nan_is_refused_per_line(
    client: httpx.AsyncClient, read_stream: ReadStream
) -> None:
    body = b'rpc{quantile="0.5"} NaN\nrpc_count 0\n'
    response = await client.post(
        "/api/v1/metrics", content=body, headers={"content-type": "text/plain"}
    )
    assert response.status_code == 207
    assert response.json()["errors"][0]["line"] == 1
    assert [s["name"] for s in read_stream("metrics-stream")] == ["rpc_count"]


async def test_named_metric_stream(
    make_client: Callable[..., httpx.AsyncClient], read_stream: ReadStream
) -> None:
    async with make_client(streams=["logs", "metrics", "http_requests"]) as c:
        response = await c.post("/api/v1/metrics?stream=http_requests", json=SAMPLE)
    assert response.status_code == 200
    assert len(read_stream("http_requests-stream")) == 1
    assert read_stream("metrics-stream") == []


async def test_remote_write_over_the_batch_limit_is_written_in_parts(
    make_client: Callable[..., httpx.AsyncClient], read_stream: ReadStream
) -> None:
    """Prometheus drops a request answered 413: one over http.max_batch_records is split
    into appends of that size, and the 204 means every sample is in Redis (defect 10)."""
    series = [({"__name__": "up", "i": str(i)}, [(1.0, 1704542400000)]) for i in range(25)]
    request = bytes(cramjam.snappy.compress_raw(encode_write_request(series)))
    headers = {"content-type": "application/x-protobuf", "content-encoding": "snappy"}
    async with make_client(**{"http.max_batch_records": 10}) as c:
        response = await c.post("/api/v1/write", content=request, headers=headers)
    assert response.status_code == 204, response.text
    assert [s["labels"]["i"] for s in read_stream("metrics-stream")] == [str(i) for i in range(25)]


async def test_remote_write_samples_keep_their_labels(
    client: httpx.AsyncClient, read_stream: ReadStream
) -> None:
    request = encode_write_request(
        [
            (
                {"__name__": "node_load1", "instance": "a:9100", "job": "node"},
                [(0.5, 1704542400000), (0.75, 1704542415000)],
            ),
            (
                {"__name__": "node_load1", "instance": "b:9100", "job": "node"},
                [(math.nan, 1704542400000)],
            ),
            ({"__name__": "http_requests_total", "code": "500"}, [(12.0, 1704542400000)]),
        ],
        {"node_load1": "gauge", "http_requests": "counter"},
    )
    response = await client.post(
        "/api/v1/write",
        content=bytes(cramjam.snappy.compress_raw(request)),
        headers={
            "content-type": "application/x-protobuf",
            "content-encoding": "snappy",
            "x-prometheus-remote-write-version": "0.1.0",
        },
    )
    assert response.status_code == 204
    stored = read_stream("metrics-stream")
    assert stored == [
        {"name": "node_load1", "value": 0.5, "labels": {"instance": "a:9100", "job": "node"},
         "timestamp": "2024-01-06T12:00:00.000000Z", "type": "gauge"},
        {"name": "node_load1", "value": 0.75, "labels": {"instance": "a:9100", "job": "node"},
         "timestamp": "2024-01-06T12:00:15.000000Z", "type": "gauge"},
        {"name": "http_requests_total", "value": 12.0, "labels": {"code": "500"},
         "timestamp": "2024-01-06T12:00:00.000000Z", "type": "counter"},
    ]  # fmt: skip
    metrics = (await client.get("/metrics")).text
    assert (
        'killkrill_receiver_rejected_records_total{kind="metrics",reason="non_finite"} 1.0'
        in metrics
    )


async def test_remote_write_partly_invalid(
    client: httpx.AsyncClient, read_stream: ReadStream
) -> None:
    request = encode_write_request(
        [
            ({"__name__": "ok", "a": "1"}, [(1.0, 1704542400000)]),
            ({"__name__": "bad-name"}, [(1.0, 1704542400000)]),
        ]
    )
    response = await client.post(
        "/api/v1/prom/write",
        content=bytes(cramjam.snappy.compress_raw(request)),
        headers={"content-type": "application/x-protobuf", "content-encoding": "snappy"},
    )
    assert response.status_code == 200
    assert response.json()["rejected"] == 1
    assert [s["name"] for s in read_stream("metrics-stream")] == ["ok"]


PROMETHEUS = shutil.which("prometheus")


@pytest.mark.slow
@pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus binary not installed (Debian: prometheus)"
)
def test_real_prometheus_remote_write(
    receiver_process: Callable[..., Any],
    redis_client: redis.Redis,
    read_stream: ReadStream,
    tmp_path: Path,
    port: int,
    free_port: Callable[[], int],
) -> None:
    """A real Prometheus scrapes itself every second and remote_writes to the receiver
    with a bearer token; its `up` samples arrive with job/instance labels."""
    from killkrill.config import hash_api_key

    keys = tmp_path / "keys.yaml"
    keys.write_text(
        f"keys:\n  - name: prometheus\n    sha256: {hash_api_key('prom-key')}\n    scopes: [remote_write]\n"
    )
    receiver_process(
        "http", "--host", "127.0.0.1", "--port", str(port),
        health_url=f"http://127.0.0.1:{port}/healthz",
        env={"KILLKRILL_AUTH__KEYS_FILE": str(keys)},
    )  # fmt: skip
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: self
    static_configs: [{{targets: ["127.0.0.1:{prom_port}"]}}]
remote_write:
  - url: http://127.0.0.1:{port}/api/v1/write
    authorization: {{credentials: prom-key}}
    queue_config: {{batch_send_deadline: 1s, max_samples_per_send: 500, min_backoff: 100ms}}
    metadata_config: {{send_interval: 1s}}
"""
    )
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        up: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not up:
            time.sleep(0.5)
            up = [s for s in read_stream("metrics-stream") if s["name"] == "up"]
        assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()
    assert up, "no `up` sample arrived: " + (tmp_path / "prometheus.log").read_text()[-2000:]
    assert up[0]["labels"] == {"job": "self", "instance": f"127.0.0.1:{prom_port}"}
    assert up[0]["value"] == 1.0
    samples = read_stream("metrics-stream")
    assert any(s["name"] == "prometheus_build_info" and "version" in s["labels"] for s in samples)
