"""Backpressure: over the backlog limit the receiver answers 429 + Retry-After, writes
nothing, never trims, and every record it did accept is still there."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import cramjam
import httpx
import redis

from killkrill.receivers.remote_write import encode_write_request

LOG = {"timestamp": "2024-01-06T12:00:00Z", "service": "api", "level": "info", "message": "m"}


async def test_429_with_retry_after_and_nothing_accepted_is_lost(
    make_client: Callable[..., httpx.AsyncClient], redis_client: redis.Redis
) -> None:
    accepted: list[str] = []
    refused = 0
    async with make_client(**{"backpressure.max_backlog": 20, "backpressure.retry_after": 3}) as c:

        async def send(i: int) -> None:
            nonlocal refused
            batch = [{**LOG, "message": f"{i}-{j}"} for j in range(3)]
            response = await c.post("/api/v1/logs", json=batch)
            if response.status_code == 200:
                accepted.extend(r["message"] for r in batch)
            else:
                assert response.status_code == 429
                assert response.headers["retry-after"] == "3"
                body = response.json()
                assert body["error"] == "backpressure" and "limit 20" in body["message"]
                # Refused before writing: resending is safe, and the answer says so.
                assert body["written"] == "none"
                assert "nothing was written: send the same request again" in body["message"]
                refused += 1

        await asyncio.gather(*(send(i) for i in range(30)))
    stored = [e[1][b"data"] for e in redis_client.xrange("logs-stream")]
    assert refused > 0
    assert len(stored) == len(accepted) <= 20  # limit respected, no trimming, no extra writes
    import orjson

    assert sorted(orjson.loads(s)["message"] for s in stored) == sorted(accepted)


async def test_accepting_resumes_when_the_worker_drains(
    make_client: Callable[..., httpx.AsyncClient], redis_client: redis.Redis
) -> None:
    async with make_client(**{"backpressure.max_backlog": 2}) as c:
        assert (await c.post("/api/v1/logs", json=[LOG, LOG])).status_code == 200
        assert (await c.post("/api/v1/logs", json=LOG)).status_code == 429
        metrics = (await c.get("/metrics")).text
        assert 'reason="backpressure"' in metrics
        for entry_id, _ in redis_client.xrange("logs-stream"):
            redis_client.xdel("logs-stream", entry_id)  # what a worker does after its ack
        assert (await c.post("/api/v1/logs", json=LOG)).status_code == 200
    assert redis_client.xlen("logs-stream") == 1


async def test_remote_write_backpressure_is_503_so_prometheus_retries(
    make_client: Callable[..., httpx.AsyncClient], redis_client: redis.Redis
) -> None:
    redis_client.xadd("metrics-stream", {"data": b"{}"})
    body = bytes(
        cramjam.snappy.compress_raw(
            encode_write_request([({"__name__": "up"}, [(1.0, 1704542400000)])])
        )
    )
    headers = {"content-type": "application/x-protobuf", "content-encoding": "snappy"}
    async with make_client(**{"backpressure.max_backlog": 1}) as c:
        response = await c.post("/api/v1/write", content=body, headers=headers)
    assert response.status_code == 503 and "retry-after" in response.headers
    assert response.json()["written"] == "none"
    assert redis_client.xlen("metrics-stream") == 1


async def test_empty_stream_always_takes_a_batch_larger_than_the_limit(
    make_client: Callable[..., Any], redis_client: redis.Redis
) -> None:
    async with make_client(**{"backpressure.max_backlog": 2}) as c:
        assert (await c.post("/api/v1/logs", json=[LOG] * 5)).status_code == 200
    assert redis_client.xlen("logs-stream") == 5
