"""Stream scoping (defect 4): only the streams the settings declare can be written, each
only through its own kind's endpoint, and a key may be limited to some of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import cramjam
import httpx
import pytest
import redis

from killkrill.receivers.remote_write import encode_write_request

LOG = {"timestamp": "2024-01-06T12:00:00Z", "service": "api", "level": "info", "message": "m"}
SAMPLE = {"name": "up", "value": 1, "timestamp": 1704542400}
STREAMS = ["logs", "metrics", "http_requests"]
PROTO = {"content-type": "application/x-protobuf", "content-encoding": "snappy"}


def remote_write_body() -> bytes:
    request = encode_write_request([({"__name__": "up"}, [(1.0, 1704542400000)])])
    return bytes(cramjam.snappy.compress_raw(request))


@pytest.fixture
async def declared(
    make_client: Callable[..., httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(streams=STREAMS) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "words"),
    [
        # The defect: samples went into logs-stream, past a key scoped to metrics.
        ("/api/v1/metrics?stream=logs", ["'logs' holds logs", "/api/v1/logs"]),
        # Any other name created a stream nothing reads.
        ("/api/v1/metrics?stream=nobody", ["'nobody' is not declared"]),
        ("/api/v1/metrics?stream=metrics:x", ["'metrics:x' is not declared"]),
        ("/api/v1/logs?stream=metrics", ["'metrics' holds metrics", "/api/v1/metrics"]),
        ("/api/v1/logs?stream=audit", ["'audit' is not declared"]),
    ],
)
async def test_an_undeclared_or_other_kinds_stream_is_refused_listing_the_declared(
    declared: httpx.AsyncClient, redis_client: redis.Redis, path: str, words: list[str]
) -> None:
    body = LOG if path.startswith("/api/v1/logs") else SAMPLE
    response = await declared.post(path, json=body)
    assert response.status_code == 400, response.text
    payload = response.json()
    assert payload["error"] == "undeclared_stream" and payload["limit"] == "streams"
    kind_streams = "logs" if path.startswith("/api/v1/logs") else "metrics, http_requests"
    for word in [*words, f"Declared {'logs' if 'logs?' in path else 'metrics'} streams: "]:
        assert word in payload["message"], payload
    assert kind_streams in payload["message"]
    assert redis_client.keys("*") == [], "a refused request wrote to Redis"


async def test_remote_write_is_scoped_too(
    declared: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    refused = await declared.post(
        "/api/v1/write?stream=logs", content=remote_write_body(), headers=PROTO
    )
    assert refused.status_code == 400 and "'logs' holds logs" in refused.json()["message"]
    accepted = await declared.post(
        "/api/v1/write?stream=http_requests", content=remote_write_body(), headers=PROTO
    )
    assert accepted.status_code == 204
    assert redis_client.xlen("http_requests-stream") == 1
    assert sorted(redis_client.keys("*")) == [b"http_requests-stream"]


async def test_declared_streams_are_written_by_their_endpoints(
    declared: httpx.AsyncClient, redis_client: redis.Redis
) -> None:
    assert (await declared.post("/api/v1/logs?stream=logs", json=LOG)).status_code == 200
    assert (await declared.post("/api/v1/metrics", json=SAMPLE)).status_code == 200
    assert (await declared.post("/api/v1/metrics?stream=http_requests", json=SAMPLE)).is_success
    assert [redis_client.xlen(k) for k in ("logs-stream", "metrics-stream")] == [1, 1]
    assert redis_client.xlen("http_requests-stream") == 1


async def test_a_receiver_without_the_default_metric_stream_names_the_way_out(
    make_client: Callable[..., httpx.AsyncClient], redis_client: redis.Redis
) -> None:
    async with make_client(streams=["http_requests"]) as c:
        logs = await c.post("/api/v1/logs", json=LOG)
        metrics = await c.post("/api/v1/metrics", json=SAMPLE)
    assert logs.status_code == 400 and "Declared logs streams: none" in logs.json()["message"]
    assert metrics.status_code == 400
    assert "name one with ?stream=" in metrics.json()["message"]
    assert "http_requests" in metrics.json()["message"]
    assert redis_client.dbsize() == 0


async def test_a_key_limited_to_some_streams(
    make_client: Callable[..., httpx.AsyncClient], redis_client: redis.Redis
) -> None:
    keys = [
        {"name": "http-team", "key": "h-key", "scopes": ["metrics"], "streams": ["http_requests"]},
        {"name": "ops", "key": "o-key"},
    ]
    async with make_client(streams=STREAMS, **{"auth.enabled": True, "auth.keys": keys}) as c:
        own = await c.post(
            "/api/v1/metrics?stream=http_requests", json=SAMPLE, headers={"x-api-key": "h-key"}
        )
        other = await c.post("/api/v1/metrics", json=SAMPLE, headers={"x-api-key": "h-key"})
        unknown = await c.post(
            "/api/v1/metrics?stream=nobody", json=SAMPLE, headers={"x-api-key": "h-key"}
        )
        anonymous = await c.post("/api/v1/metrics?stream=nobody", json=SAMPLE)
        everything = await c.post("/api/v1/metrics", json=SAMPLE, headers={"x-api-key": "o-key"})
    assert own.status_code == 200
    assert other.status_code == 403 and other.json()["error"] == "forbidden_stream"
    assert "http-team" in other.json()["message"] and "'metrics'" in other.json()["message"]
    assert unknown.status_code == 400
    # Who has no key learns nothing about the declared streams.
    assert anonymous.status_code == 401 and "http_requests" not in anonymous.text
    assert everything.status_code == 200
    assert redis_client.xlen("http_requests-stream") == 1
    assert redis_client.xlen("metrics-stream") == 1
