"""Bad samples, label explosions and PostgreSQL outages (real Redis + PostgreSQL)."""

from __future__ import annotations

import json
import signal
import time
from urllib.parse import urlsplit

import psycopg2
import pytest
from pending import QUICK_RECLAIM_ENV, QUICK_RECLAIM_MS, age_pending

from killkrill.errors import RejectedBatch, ValidationError
from killkrill.streams.dead_letter import iter_dead_letters
from killkrill.workers.metrics import MetricsWorker, Sample

DLQ = "metrics-stream:dead-letter"


@pytest.mark.integration
def test_bad_samples_are_dead_lettered_with_reasons_others_aggregated(
    redis_client, metrics_worker_config, add_samples, make_sample, totals
):
    good = [make_sample("api_latency_seconds", v, {"route": "/a"}) for v in (0.1, 0.2, 0.3)]
    bad = {
        b'{"name": "api_latency_seconds", "value": NaN}': "not valid JSON",
        make_sample("api_latency_seconds", "NaN"): "must be finite",
        json.dumps({"value": 1.0, "labels": {}}).encode(): "missing required field name",
        make_sample("api_latency_seconds", "fast"): "'fast' is not a number",
    }
    explosion = [make_sample("user_logins", 1, {"user": f"u{i}"}) for i in range(6)]
    ids = add_samples("metrics-stream", [*good, *bad, *explosion])

    with MetricsWorker({**metrics_worker_config, "max_series_per_metric": 3}) as worker:
        result = worker.aggregate_batch(count=100)

    assert (result.success, result.dead_lettered, result.failed) == (6, 7, 7)
    assert totals() == {"api_latency_seconds": (3, pytest.approx(0.6)), "user_logins": (3, 3.0)}
    assert redis_client.xlen("metrics-stream") == 0
    letters = {letter.source_id: letter for letter in iter_dead_letters(redis_client, DLQ)}
    assert len(letters) == 7
    for eid, (payload, reason) in zip(ids[3:7], bad.items(), strict=True):
        assert reason in letters[eid].reason
        assert letters[eid].data == payload  # byte for byte
        assert letters[eid].source_stream == "metrics-stream"
        assert letters[eid].worker.startswith("metrics-worker/")
    for eid in ids[10:]:
        assert "label explosion" in letters[eid].reason
        assert "cap is 3" in letters[eid].reason


@pytest.mark.integration
def test_stop_on_error_raises_after_the_batch_is_handled(
    redis_client, metrics_worker, add_samples, make_sample, totals
):
    add_samples(
        "metrics-stream",
        [make_sample("jobs_done", 1), b'{"invalid": "sample"}', make_sample("jobs_done", 2)],
    )
    with pytest.raises(ValidationError, match="missing required field name"):
        metrics_worker.aggregate_batch(stop_on_error=True)
    assert totals() == {"jobs_done": (2, 3.0)}
    assert redis_client.xlen(DLQ) == 1


@pytest.mark.integration
def test_database_unreachable_leaves_entries_pending_then_they_are_delivered(
    redis_client, metrics_worker_config, add_samples, make_sample, totals, free_port
):
    """PostgreSQL errors are retryable: nothing is acked or dead-lettered while it is down."""
    add_samples("metrics-stream", [make_sample("retried", 1) for _ in range(3)])
    url = urlsplit(metrics_worker_config["database_url"])
    dead = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{free_port()}").geturl()

    with MetricsWorker({**metrics_worker_config, "database_url": dead}) as broken:
        result = broken.aggregate_batch(max_retries=1)
        errors = broken.instruments.db_errors.labels("connect")._value.get()
    assert (result.success, result.pending, result.attempts, result.dead_lettered) == (0, 3, 2, 0)
    assert errors == 2
    assert "PostgreSQL unreachable" in result.errors[0]
    assert redis_client.xlen("metrics-stream") == 3
    assert redis_client.xpending("metrics-stream", "metrics-worker")["pending"] == 3

    age_pending(redis_client, "metrics-stream", "metrics-worker")  # as if an hour went by
    with MetricsWorker(metrics_worker_config) as worker:
        assert worker.aggregate_batch()["success"] == 3
    assert totals() == {"retried": (3, 3.0)}
    assert redis_client.xlen(DLQ) == 0


@pytest.fixture
def managed_postgres(postgres_url):
    """The PostgreSQL of `killkrill dev services` serving the test database (to stop it)."""
    from killkrill.dev.postgres_server import PostgresServer

    server = PostgresServer()
    if server.pid() is None or server.port != urlsplit(postgres_url).port:
        pytest.skip(
            "TEST_DATABASE_URL is not served by `killkrill dev services` with this "
            "KILLKRILL_DEV_HOME / KILLKRILL_DEV_PORT_OFFSET, so it cannot be stopped here"
        )
    yield server
    if not server.running():
        server.start()


@pytest.mark.integration
@pytest.mark.slow
def test_postgres_restart_mid_run_loses_nothing(
    redis_client, managed_postgres, spawn_worker, add_samples, make_sample, totals, wait_until
):
    """PostgreSQL stopped and started under a running worker: totals exact, nothing
    dead-lettered, the worker still exits 0 on SIGTERM."""

    def batch(n: int) -> list[bytes]:
        return [make_sample("pg_restart", 1, {"k": str(i % 20)}) for i in range(n)]

    worker = spawn_worker(
        "--batch-size", "200", "--claim-idle-ms", QUICK_RECLAIM_MS, env=QUICK_RECLAIM_ENV
    )
    add_samples("metrics-stream", batch(2000))
    wait_until(lambda: sum(c for c, _ in totals().values()) > 0, 30, "first samples applied")
    managed_postgres.stop()
    try:
        add_samples("metrics-stream", batch(2000))
        time.sleep(2.0)  # the worker meets the outage: retries, leaves pending, waits
        assert redis_client.xlen("metrics-stream") > 0
    finally:
        managed_postgres.start()
    add_samples("metrics-stream", batch(1000))
    wait_until(
        lambda: (
            redis_client.xlen("metrics-stream") == 0
            and redis_client.xpending("metrics-stream", "metrics-worker")["pending"] == 0
        ),
        60,
        "the stream drained after PostgreSQL came back",
        interval=0.2,
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()
    assert totals() == {"pg_restart": (5000, 5000.0)}
    assert redis_client.xlen(DLQ) == 0
    assert "batch left pending, waiting for the sink" in worker.output()


# --- one bad sample does not poison its batch (real PostgreSQL) ---------------------------------

TS = 1_704_542_400  # 2024-01-06T12:00:00Z: one bucket for every sample below


def _applied_entries(url: str) -> int:
    conn = psycopg2.connect(url, connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metric_applied_entries")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.mark.integration
def test_one_bad_sample_does_not_poison_its_batch(
    redis_client, metrics_worker_config, add_samples, make_sample, totals
):
    """Among good samples: a label value holding NUL (jsonb cannot store it), two samples
    whose sum overflows a double in one bucket, and one that overflows the sum already
    stored. Only those are dead-lettered, with the reason; every other sample is aggregated
    exactly once (totals exact, one ledger row each)."""
    add_samples("metrics-stream", [make_sample("stored_total", 1e308, ts=TS)])
    with MetricsWorker(metrics_worker_config) as worker:
        assert worker.aggregate_batch().success == 1
        good = [make_sample("requests_total", 1, {"code": "200"}, ts=TS + i) for i in range(6)]
        nul = make_sample("requests_total", 1, {"code": "2\u000000"}, ts=TS)
        big_a = make_sample("big_total", 1e308, ts=TS + 1)
        big_b = make_sample("big_total", 1e308, ts=TS + 2)
        over_stored = make_sample("stored_total", 1e308, ts=TS + 3)
        batch = [good[0], good[1], nul, good[2], big_a, good[3], big_b, good[4], over_stored]
        ids = dict(zip(["g0", "g1", "nul", "g2", "a", "g3", "b", "g4", "s"], add_samples(
            "metrics-stream", [*batch, good[5]]
        ), strict=False))  # fmt: skip
        result = worker.aggregate_batch(count=100)

    assert (result.success, result.dead_lettered, result.pending) == (7, 3, 0)
    assert totals() == {
        "requests_total": (6, 6.0),
        "big_total": (1, 1e308),
        "stored_total": (1, 1e308),
    }
    assert _applied_entries(metrics_worker_config["database_url"]) == 1 + 7
    assert redis_client.xlen("metrics-stream") == 0
    assert redis_client.xpending("metrics-stream", "metrics-worker")["pending"] == 0
    letters = {d.source_id: d for d in iter_dead_letters(redis_client, DLQ)}
    assert ids["nul"] in letters and ids["s"] in letters
    assert "NUL character" in letters[ids["nul"]].reason
    assert letters[ids["nul"]].data == nul  # byte for byte
    [big_letter] = [letters[i] for i in (ids["a"], ids["b"]) if i in letters]
    for letter in (big_letter, letters[ids["s"]]):
        assert "SQLSTATE 22003" in letter.reason
        assert "out of range" in letter.reason


@pytest.mark.integration
def test_postgresql_data_errors_are_permanent_and_others_apply(metrics_worker, totals):
    """What reaches PostgreSQL and is refused for its data (a NUL in a label value past
    the schema, e.g. an entry written by another tool) is a permanent error, with
    PostgreSQL's reason; the same transaction without it applies."""
    bad = Sample("jobs_total", 1.0, (("path", "a\x00b"),), float(TS), "counter")
    ok = Sample("jobs_total", 2.0, (("path", "ab"),), float(TS), "counter")
    with pytest.raises(RejectedBatch, match="SQLSTATE 22P05"):
        metrics_worker.store.apply([("metrics-stream", "1-1", ok), ("metrics-stream", "1-2", bad)])
    assert totals() == {}
    assert metrics_worker.store.apply([("metrics-stream", "1-1", ok)]).applied == ["1-1"]
    assert totals() == {"jobs_total": (1, 2.0)}
    errors = metrics_worker.instruments.db_errors.labels("data")._value.get()
    assert errors == 1


@pytest.mark.integration
def test_a_series_cache_smaller_than_the_series_stays_bounded_and_exact(
    redis_client, metrics_worker_config, add_samples, make_sample, totals, database_schema
):
    """100 series through a worker remembering 20 (aggregation.series_cache_size) under a
    cap of 60 per metric, twice: the cache never holds more than 20, and the series it
    forgot are looked up again, so the cap counts each series once - the same 60 series
    are aggregated in both rounds, the other 40 refused both times."""
    from killkrill.workers.metrics.settings import settings_from_seed

    seed = settings_from_seed({**metrics_worker_config, "max_series_per_metric": 60})
    settings = seed.model_copy(
        update={"aggregation": seed.aggregation.model_copy(update={"series_cache_size": 20})}
    )
    with MetricsWorker(settings) as worker:
        for _ in range(2):
            add_samples(
                "metrics-stream",
                [make_sample("evicted", 1, {"series": str(i)}) for i in range(100)],
            )
            result = worker.aggregate_batch(count=100)
            assert (result.success, result.dead_lettered) == (60, 40)
            assert len(worker.store.series) <= 20
            assert len(worker.store._series) <= 20

    assert totals() == {"evicted": (120, 120.0)}
    conn = psycopg2.connect(database_schema)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metric_series WHERE name = 'evicted'")
            assert cur.fetchone() == (60,)
    finally:
        conn.close()
