"""Aggregation into PostgreSQL, exactly once across crashes (real Redis + PostgreSQL)."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pending import QUICK_RECLAIM_ENV, QUICK_RECLAIM_MS, age_pending
from sqlalchemy import select

from killkrill.db import AggregatedMetric, Base, MetricSeries, create_engine
from killkrill.workers.metrics import MetricsWorker


@pytest.mark.integration
@pytest.mark.requires_db
def test_metrics_aggregated_in_database(redis_client, db_session, metrics_worker):
    """Metrics should be aggregated and stored in database (the seed's test).

    The seed asserts ``sum == 502`` next to the comment ``100+101+102+103+104``, which adds
    up to 510: the comment's arithmetic is right, the literal is a typo, so 510 is asserted.
    """
    for i in range(5):
        metric = {
            "name": "http_requests_total",
            "value": 100 + i,
            "labels": {"endpoint": "/api/v1/users"},
            "timestamp": int(time.time()),
        }
        redis_client.xadd("metrics-stream", {"data": json.dumps(metric)})

    metrics_worker.aggregate_batch()

    from shared.models import AggregatedMetric

    agg = db_session.query(AggregatedMetric).filter_by(name="http_requests_total").first()

    assert agg is not None
    assert agg.count == 5
    assert agg.sum == 510  # 100+101+102+103+104 (the seed's "502" is a typo)
    assert (agg.min, agg.max, agg.last) == (100, 104, 104)
    assert agg.labels == {"endpoint": "/api/v1/users"}


@pytest.mark.integration
def test_buckets_min_max_last_and_seen_times(
    metrics_worker_config, db_session, add_samples, make_sample
):
    """Samples fold per (name, labels, bucket); last is by sample time, not arrival order."""
    base = 1_767_225_600  # 2026-01-01T00:00:00Z, a multiple of 60
    add_samples(
        "metrics-stream",
        [
            make_sample("temp_celsius", 20.0, {"room": "a"}, ts=base + 10, type="gauge"),
            make_sample("temp_celsius", 25.0, {"room": "a"}, ts=base + 50, type="gauge"),
            make_sample("temp_celsius", 22.0, {"room": "a"}, ts=base + 30, type="gauge"),
            make_sample("temp_celsius", 19.0, {"room": "a"}, ts=base + 70, type="gauge"),
            make_sample("temp_celsius", 30.0, {"room": "b"}, ts=base + 5, type="gauge"),
        ],
    )
    with MetricsWorker({**metrics_worker_config, "bucket_seconds": 60}) as worker:
        assert worker.aggregate_batch()["success"] == 5

    rows = db_session.scalars(
        select(AggregatedMetric).order_by(
            AggregatedMetric.labels_hash, AggregatedMetric.bucket_start
        )
    ).all()
    by_key = {(r.labels["room"], int(r.bucket_start.timestamp())): r for r in rows}
    assert set(by_key) == {("a", base), ("a", base + 60), ("b", base)}
    first = by_key[("a", base)]
    assert (first.count, first.sum, first.min, first.max) == (3, 67.0, 20.0, 25.0)
    assert first.last == 25.0  # the latest timestamp (base+50), although 22.0 arrived later
    assert first.first_seen == datetime.fromtimestamp(base + 10, UTC)
    assert first.last_seen == datetime.fromtimestamp(base + 50, UTC)
    assert (first.bucket_seconds, first.type) == (60, "gauge")
    assert by_key[("a", base + 60)].count == 1
    assert len(db_session.scalars(select(MetricSeries)).all()) == 2


@pytest.mark.integration
def test_label_order_does_not_split_a_series(metrics_worker, add_samples, make_sample, totals):
    add_samples(
        "metrics-stream",
        [
            make_sample("orders", 1, {"a": "1", "b": "2"}),
            make_sample("orders", 2, {"b": "2", "a": "1"}),
        ],
    )
    metrics_worker.aggregate_batch()
    with metrics_worker.engine.connect() as conn:
        n = conn.execute(select(AggregatedMetric.id)).all()
    assert len(n) == 1
    assert totals() == {"orders": (2, 3.0)}


@pytest.mark.integration
def test_a_redelivered_batch_changes_nothing(metrics_worker, add_samples, make_sample, totals):
    """The ledger makes re-applying the same entries a no-op that still reports them done."""
    ids = add_samples("metrics-stream", [make_sample("redelivered", 10) for _ in range(4)])
    from killkrill.workers.metrics.sample import parse_sample

    triples = [("metrics-stream", eid, parse_sample(make_sample("redelivered", 10))) for eid in ids]
    first = metrics_worker.store.apply(triples)
    again = metrics_worker.store.apply(triples)

    assert (len(first.applied), len(first.duplicates)) == (4, 0)
    assert (len(again.applied), len(again.duplicates)) == (0, 4)
    assert totals() == {"redelivered": (4, 40.0)}


@pytest.mark.integration
@pytest.mark.slow
def test_crash_after_commit_before_ack_is_exactly_once(
    redis_client, spawn_worker, add_samples, make_sample, totals, metrics_worker_config
):
    """A worker killed (SIGKILL) between COMMIT and XACK leaves its batch pending; the
    worker that picks it up finds it in the ledger and acks it without counting it twice."""
    add_samples("metrics-stream", [make_sample("crashy", i) for i in range(50)])

    crashed = spawn_worker("--batch-size", "50", env={"KILLKRILL_FAULT": "metrics.after_commit"})
    assert crashed.wait(30) == -signal.SIGKILL, crashed.output()
    # Committed, never acked: the aggregates have the batch, the stream still holds it.
    assert totals() == {"crashy": (50, 1225.0)}
    assert redis_client.xlen("metrics-stream") == 50
    assert redis_client.xpending("metrics-stream", "metrics-worker")["pending"] == 50

    age_pending(redis_client, "metrics-stream", "metrics-worker")  # it died an hour ago
    with MetricsWorker(metrics_worker_config) as worker:
        result = worker.aggregate_batch(count=100)
        duplicates = worker.instruments.duplicates.labels("metrics-stream")._value.get()

    assert result.success == 50
    assert duplicates == 50
    assert totals() == {"crashy": (50, 1225.0)}
    assert redis_client.xlen("metrics-stream") == 0
    assert redis_client.xpending("metrics-stream", "metrics-worker")["pending"] == 0


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_during_100k_run_then_restart_gives_exact_totals(
    redis_client, spawn_worker, add_samples, make_sample, totals, wait_until
):
    """SIGKILL a worker half-way through 100,000 samples; a restarted one ends exact."""
    n, series = 100_000, 1_000
    now = time.time()
    add_samples(
        "metrics-stream",
        [make_sample(f"load_{i % 10}", i % 7, {"s": str(i % series)}, ts=now) for i in range(n)],
    )
    expected_sum = float(sum(i % 7 for i in range(n)))

    def applied() -> int:
        return sum(c for c, _ in totals().values())

    first = spawn_worker(
        "--batch-size", "2000", "--claim-idle-ms", QUICK_RECLAIM_MS, env=QUICK_RECLAIM_ENV
    )
    wait_until(lambda: applied() >= 20_000, 60, "20,000 samples applied by the first worker")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert applied() < n, "the first worker finished before it could be killed"

    second = spawn_worker(
        "--batch-size", "2000", "--claim-idle-ms", QUICK_RECLAIM_MS, env=QUICK_RECLAIM_ENV
    )
    wait_until(
        lambda: (
            redis_client.xlen("metrics-stream") == 0
            and redis_client.xpending("metrics-stream", "metrics-worker")["pending"] == 0
        ),
        120,
        "the stream drained by the restarted worker",
        interval=0.2,
    )
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0, second.output()

    got = totals()
    assert sum(c for c, _ in got.values()) == n
    assert sum(s for _, s in got.values()) == expected_sum
    assert got == {
        f"load_{k}": (
            n // 10,
            float(sum(i % 7 for i in range(k, n, 10))),
        )
        for k in range(10)
    }


@pytest.mark.integration
def test_migrations_match_the_models(database_schema):
    """`killkrill db upgrade` builds exactly the schema the models describe."""
    engine = create_engine(database_schema)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []
