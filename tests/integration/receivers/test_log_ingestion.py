"""POST /api/v1/logs into the real logs-stream: shapes, encodings, normalisation, partial."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import redis

ReadStream = Callable[[str], list[dict[str, Any]]]

LOG = {
    "timestamp": "2024-01-06T12:00:00Z",
    "service": "auth-service",
    "level": "ERROR",
    "message": "Authentication failed",
}
STORED = {**LOG, "timestamp": "2024-01-06T12:00:00.000000Z", "level": "error"}


async def test_one_record_is_stored_normalised_with_data_and_version_fields(
    client: httpx.AsyncClient, read_stream: ReadStream
) -> None:
    response = await client.post("/api/v1/logs", json=LOG)
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "rejected": 0}
    assert read_stream("logs-stream") == [STORED]


async def test_array_keeps_order_and_extra_fields(
    client: httpx.AsyncClient, read_stream: ReadStream
) -> None:
    batch = [
        {**LOG, "message": f"m{i}", "level": lvl, "request": {"id": i}, "tags": ["a"]}
        for i, lvl in enumerate(["info", "WARNING", "crit", "Debug", "trace"])
    ]
    response = await client.post("/api/v1/logs", json=batch)
    assert response.json() == {"accepted": 5, "rejected": 0}
    stored = read_stream("logs-stream")
    assert [r["message"] for r in stored] == ["m0", "m1", "m2", "m3", "m4"]
    assert [r["level"] for r in stored] == ["info", "warn", "fatal", "debug", "trace"]
    assert stored[3]["request"] == {"id": 3} and stored[3]["tags"] == ["a"]


async def test_ndjson_and_gzip(client: httpx.AsyncClient, read_stream: ReadStream) -> None:
    lines = b"\r\n".join(orjson.dumps({**LOG, "message": f"n{i}"}) for i in range(3)) + b"\n"
    r1 = await client.post(
        "/api/v1/logs", content=lines, headers={"content-type": "application/x-ndjson"}
    )
    r2 = await client.post(
        "/api/v1/logs",
        content=gzip.compress(lines),
        headers={"content-type": "application/x-ndjson", "content-encoding": "gzip"},
    )
    r3 = await client.post(
        "/api/v1/logs",
        content=gzip.compress(orjson.dumps([LOG, LOG])),
        headers={"content-type": "application/json; charset=utf-8", "content-encoding": "gzip"},
    )
    assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]
    assert len(read_stream("logs-stream")) == 8


async def test_ndjson_labelled_application_json_is_read_as_ndjson(
    client: httpx.AsyncClient, read_stream: ReadStream
) -> None:
    body = orjson.dumps(LOG) + b"\n" + orjson.dumps(LOG)
    response = await client.post(
        "/api/v1/logs", content=body, headers={"content-type": "application/json"}
    )
    assert response.json()["accepted"] == 2


async def test_epoch_timestamps(client: httpx.AsyncClient, read_stream: ReadStream) -> None:
    batch = [{**LOG, "timestamp": t} for t in (1704542400, 1704542400123, "1704542400")]
    assert (await client.post("/api/v1/logs", json=batch)).status_code == 200
    assert [r["timestamp"] for r in read_stream("logs-stream")] == [
        "2024-01-06T12:00:00.000000Z", "2024-01-06T12:00:00.123000Z", "2024-01-06T12:00:00.000000Z",
    ]  # fmt: skip


async def test_partial_batch_accepts_the_valid_records_and_lists_the_rest(
    client: httpx.AsyncClient, read_stream: ReadStream
) -> None:
    batch = [LOG, {**LOG, "level": "loud"}, LOG, {"service": "x"}, 42]
    response = await client.post("/api/v1/logs", json=batch)
    assert response.status_code == 207
    body = response.json()
    assert (body["accepted"], body["rejected"], body["partial"]) == (2, 3, True)
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "level"),
        (3, "timestamp"),
        (4, ""),
    ]
    assert "not a known level" in body["errors"][0]["reason"]
    assert read_stream("logs-stream") == [STORED, STORED]


async def test_ndjson_bad_line_is_reported_by_line_number(
    client: httpx.AsyncClient, read_stream: ReadStream
) -> None:
    body = orjson.dumps(LOG) + b"\n{oops\n" + orjson.dumps(LOG) + b"\n"
    response = await client.post(
        "/api/v1/logs", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 207
    error = response.json()["errors"][0]
    assert (error["index"], error["line"]) == (1, 2)
    assert "JSON" in error["reason"] or "expected" in error["reason"]
    assert len(read_stream("logs-stream")) == 2


async def test_named_pipeline_prefixes_the_stream(
    make_client: Callable[..., httpx.AsyncClient],
    read_stream: ReadStream,
    redis_client: redis.Redis,
) -> None:
    async with make_client(pipeline="payments") as c:
        assert (await c.post("/api/v1/logs", json=LOG)).status_code == 200
    assert read_stream("payments:logs-stream") == [STORED]
    assert redis_client.xlen("logs-stream") == 0


async def test_health_ready_metrics_and_openapi(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {
        "status": "ready",
        "streams": {
            "logs-stream": {"backlog": 0, "limit": 1_000_000, "full": False},
            "metrics-stream": {"backlog": 0, "limit": 1_000_000, "full": False},
        },
    }
    await client.post("/api/v1/logs", json=[LOG, LOG])
    await client.post("/api/v1/logs", json={"x": 1})
    text = (await client.get("/metrics")).text
    assert 'killkrill_receiver_accepted_records_total{kind="logs",protocol="http"} 2.0' in text
    assert 'killkrill_receiver_rejected_records_total{kind="logs",reason="invalid"} 1.0' in text
    assert "killkrill_receiver_request_duration_seconds_bucket" in text
    assert "killkrill_receiver_redis_write_duration_seconds_bucket" in text
    assert 'killkrill_receiver_received_bytes_total{protocol="http"}' in text
    spec = (await client.get("/openapi.json")).json()
    assert {"/api/v1/logs", "/api/v1/metrics", "/api/v1/write", "/api/v1/prom/write"} <= set(
        spec["paths"]
    )
    assert "LogRecord" in spec["components"]["schemas"]
    assert "MetricSample" in spec["components"]["schemas"]
    assert (await client.get("/docs")).status_code == 200


async def test_a_full_backlog_keeps_the_receiver_ready_answering_429(
    make_client: Callable[..., httpx.AsyncClient], redis_client: redis.Redis
) -> None:
    """A full stream is reported, not a reason to leave the Service: clients must keep
    getting 429 + Retry-After from a ready receiver (defect 10)."""
    for _ in range(3):
        redis_client.xadd("logs-stream", {"data": b"{}"})
    async with make_client(**{"backpressure.max_backlog": 3}) as c:
        ready = await c.get("/readyz")
        refused = await c.post("/api/v1/logs", json=LOG)
        metrics = (await c.get("/metrics")).text
    assert ready.status_code == 200, ready.text
    assert ready.json()["streams"]["logs-stream"] == {"backlog": 3, "limit": 3, "full": True}
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert 'killkrill_receiver_stream_backlog_entries{stream="logs-stream"} 3.0' in metrics
    assert "killkrill_receiver_stream_backlog_limit_entries 3.0" in metrics


async def test_redis_down_answers_503_with_retry_after(
    make_settings: Callable[..., Any],
) -> None:
    import redis.asyncio as aioredis

    from killkrill.receivers.http_app import build_http_app

    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    app = build_http_app(make_settings(), client=dead)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as c:
        response = await c.post("/api/v1/logs", json=LOG)
        ready = await c.get("/readyz")
    await dead.aclose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["error"] == "redis_unavailable" and body["written"] == "unknown"
    # The append may have run before the answer was lost: no promise that resending is safe.
    assert (
        "may have been accepted; resending may duplicate them unless records carry an id"
        in (body["message"])
    )
    assert "send the same request again" not in body["message"]
    assert ready.status_code == 503
    assert "redis" in ready.json()["problems"]
