"""The throughput paths of the metrics worker keep its guarantees (real Redis + PostgreSQL):
the optimistic ledger insert and its careful retry, concurrent transactions, batches in
flight together, array literals, and the exposition's bound on recent buckets. (How the
table takes updates in place is a performance property: bench/metrics_worker/
bench_hot_updates.py measures it.)"""

from __future__ import annotations

import threading

import psycopg2
import pytest
from prometheus_client import generate_latest

from killkrill.workers.metrics import MetricsWorker
from killkrill.workers.metrics.sample import parse_sample

STREAM = "metrics-stream"


@pytest.mark.integration
def test_a_partly_redelivered_batch_applies_only_the_new_entries(
    metrics_worker, add_samples, make_sample, totals
):
    """The plain ledger insert fails on the already-applied entries; the careful retry
    applies the others, once."""
    ids = add_samples(STREAM, [make_sample("partly", v) for v in (1, 2, 3, 4)])
    triples = [
        (STREAM, eid, parse_sample(make_sample("partly", v)))
        for eid, v in zip(ids, (1, 2, 3, 4), strict=True)
    ]

    first = metrics_worker.store.apply(triples[:2])
    again = metrics_worker.store.apply(triples)

    assert (first.applied, first.duplicates) == (ids[:2], [])
    assert (sorted(again.applied), sorted(again.duplicates)) == (sorted(ids[2:]), sorted(ids[:2]))
    assert totals() == {"partly": (4, 10.0)}


@pytest.mark.integration
def test_concurrent_transactions_over_the_same_entries_apply_each_once(
    metrics_worker_config, add_samples, make_sample, totals
):
    """Two consumers applying overlapping entries at the same time (a reclaim racing the
    original owner): each entry counted once, no deadlock, every entry reported done."""
    n = 400
    ids = add_samples(STREAM, [make_sample("raced", 1, {"k": str(i % 7)}) for i in range(n)])
    triples = [
        (STREAM, eid, parse_sample(make_sample("raced", 1, {"k": str(i % 7)})))
        for i, eid in enumerate(ids)
    ]
    batches = [triples[: n * 3 // 4], triples[n // 4 :], list(reversed(triples))]
    results: list[object] = []
    with MetricsWorker(metrics_worker_config) as worker:
        barrier = threading.Barrier(len(batches))

        def apply(batch: list) -> None:
            barrier.wait()
            results.append(worker.store.apply(batch))

        threads = [threading.Thread(target=apply, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(results) == len(batches)  # none failed or hung
    applied = [eid for r in results for eid in r.applied]  # type: ignore[attr-defined]
    assert sorted(applied) == sorted(ids)
    for r in results:
        done = sorted([*r.applied, *r.duplicates])  # type: ignore[attr-defined]
        assert any(done == sorted(eid for _, eid, _ in b) for b in batches)
    assert totals() == {"raced": (n, float(n))}


@pytest.mark.integration
async def test_batches_in_flight_together_give_exact_totals(
    metrics_worker_config, add_samples, make_sample, totals, redis_client
):
    n = 3000
    add_samples(
        STREAM,
        [make_sample("inflight", i % 10, {"series": str(i % 50)}) for i in range(n)],
    )
    worker = MetricsWorker({**metrics_worker_config, "batch_size": 50, "in_flight": 4})
    try:
        result = await worker.process_stream_async("metrics")
    finally:
        worker.close()
    assert (result.read, result.success, result.failed) == (n, n, 0)
    assert totals() == {"inflight": (n, float(sum(i % 10 for i in range(n))))}
    assert redis_client.xlen(STREAM) == 0


@pytest.mark.integration
def test_names_and_labels_needing_quotes_are_stored_exactly(
    metrics_worker, add_samples, make_sample
):
    labels = {"path": '/a "b" \\c', "emoji": "☃ {x,y}", "empty": "", "null": "NULL"}
    add_samples(STREAM, [make_sample("NULL", 1.5, labels), make_sample("NULL", 2.5, labels)])
    result = metrics_worker.aggregate_batch()
    assert result.success == 2
    conn = psycopg2.connect(metrics_worker.settings.database.url.get_secret_value())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name, labels, count, sum FROM aggregated_metrics")
            assert cur.fetchall() == [("NULL", labels, 2, 4.0)]
            cur.execute("SELECT name, labels FROM metric_series")
            assert cur.fetchall() == [("NULL", labels)]
    finally:
        conn.close()


@pytest.mark.integration
def test_a_series_in_day_wide_buckets_is_exposed(
    metrics_worker_config, add_samples, make_sample, database_schema
):
    """The widest bucket the settings allow (a day) still reaches /metrics: the exposition
    finds recent buckets by their start, up to a day before the newest sample."""
    add_samples(STREAM, [make_sample("daily", 3.0, type="gauge")])
    with MetricsWorker({**metrics_worker_config, "bucket_seconds": 86_400}) as worker:
        assert worker.aggregate_batch().success == 1
        text = generate_latest(worker.instruments.registry).decode()
    assert "daily 3.0" in text
    assert "daily_window_count 1.0" in text
