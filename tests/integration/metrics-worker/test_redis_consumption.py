"""The metrics worker reads metric streams through consumer groups (real Redis + PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pending import age_pending

from killkrill.workers.metrics import MetricsWorker


@pytest.mark.integration
@pytest.mark.requires_db
def test_metrics_worker_consumes_from_redis_stream(redis_client, metrics_worker):
    """Worker should consume metrics from the Redis stream (acked and deleted after COMMIT)."""
    metric = {
        "name": "http_request_duration_seconds",
        "value": 0.125,
        "labels": {"method": "GET", "endpoint": "/api/v1/users"},
        "timestamp": int(time.time()),
    }
    redis_client.xadd("metrics-stream", {"data": json.dumps(metric)})

    result = metrics_worker.aggregate_batch()

    assert redis_client.xlen("metrics-stream") == 0
    assert result["success"] == 1
    assert result["failed"] == 0
    assert redis_client.xpending("metrics-stream", "metrics-worker")["pending"] == 0


@pytest.mark.integration
@pytest.mark.asyncio
async def test_metrics_worker_concurrent_processing(redis_client, metrics_worker):
    """Metrics worker should handle concurrent streams (the seed's test, as written)."""
    streams = ["http_requests", "db_queries", "cache_hits"]

    for stream in streams:
        for i in range(100):
            metric = {"name": stream, "value": i, "timestamp": int(time.time())}
            redis_client.xadd(f"{stream}-stream", {"data": json.dumps(metric)})

    tasks = [metrics_worker.process_stream_async(s) for s in streams]
    results = await asyncio.gather(*tasks)

    assert all(r.success for r in results)


@pytest.mark.integration
async def test_concurrent_streams_are_aggregated_exactly(
    redis_client, metrics_worker, add_samples, make_sample, totals
):
    """Each of three streams is drained through its own group; every total is exact."""
    streams = ["http_requests", "db_queries", "cache_hits"]
    for stream in streams:
        add_samples(f"{stream}-stream", [make_sample(stream, i) for i in range(100)])

    results = await asyncio.gather(*(metrics_worker.process_stream_async(s) for s in streams))

    assert [(r.success, r.failed) for r in results] == [(100, 0)] * 3
    assert totals() == {s: (100, 4950.0) for s in streams}
    for stream in streams:
        assert redis_client.xlen(f"{stream}-stream") == 0
        groups = redis_client.xinfo_groups(f"{stream}-stream")
        assert [g["name"] for g in groups] == [b"metrics-worker"]


@pytest.mark.integration
async def test_empty_stream_gives_falsy_success(metrics_worker):
    """Nothing to do is not a success: ``success`` counts delivered entries."""
    result = await metrics_worker.process_stream_async("nothing_here")
    assert result.success == 0
    assert not result.success
    assert result.failed == 0


@pytest.mark.integration
async def test_two_workers_share_one_stream(
    redis_client, metrics_worker_config, add_samples, make_sample, totals
):
    """Two worker instances (two consumers of one group) split the work; totals are exact."""
    add_samples("metrics-stream", [make_sample("shared_work", 1.0) for _ in range(600)])
    workers = [MetricsWorker({**metrics_worker_config, "consumer": name}) for name in "ab"]
    try:
        results = await asyncio.gather(*(w.process_stream_async("metrics") for w in workers))
    finally:
        for w in workers:
            w.close()

    assert sum(r.success for r in results) == 600
    assert all(r.success > 0 for r in results), [r.success for r in results]
    assert totals() == {"shared_work": (600, 600.0)}
    consumers = redis_client.xinfo_consumers("metrics-stream", "metrics-worker")
    assert sorted(c["name"] for c in consumers) == [b"a", b"b"]


@pytest.mark.integration
async def test_pending_entries_of_a_dead_consumer_are_reclaimed(
    redis_client: redis.Redis,
    metrics_worker_config: dict[str, Any],
    add_samples: Callable[..., list[str]],
    make_sample: Callable[..., bytes],
    totals: Callable[[], dict[str, tuple[int, float]]],
):
    """Entries read by a consumer that died unacked are taken over after claim_idle_ms (the
    default: above the longest a live batch may take, so the live consumer's lanes never
    reclaim each other's entries in flight; the dead consumer's are aged past it)."""
    add_samples("metrics-stream", [make_sample("reclaimed", i) for i in range(20)])
    redis_client.xgroup_create("metrics-stream", "metrics-worker", id="0")
    redis_client.xreadgroup("metrics-worker", "dead-consumer", {"metrics-stream": ">"}, count=15)
    age_pending(redis_client, "metrics-stream", "metrics-worker")  # it died an hour ago

    worker = MetricsWorker({**metrics_worker_config, "consumer": "alive"})
    try:
        result = await worker.process_stream_async("metrics")
    finally:
        worker.close()

    assert result.success == 20
    assert totals() == {"reclaimed": (20, 190.0)}
    assert redis_client.xpending("metrics-stream", "metrics-worker")["pending"] == 0


@pytest.mark.integration
def test_aggregate_batch_works_inside_a_running_event_loop(
    redis_client, metrics_worker, add_samples, make_sample, totals
):
    """The blocking API runs on the worker's own loop, so a caller's loop does not matter."""
    add_samples("metrics-stream", [make_sample("from_async", 2.5)])

    async def caller() -> int:
        return int(metrics_worker.aggregate_batch()["success"])

    assert asyncio.run(caller()) == 1
    assert totals() == {"from_async": (1, 2.5)}
