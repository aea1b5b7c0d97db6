"""The throughput paths of the metrics worker keep its guarantees (real Redis + PostgreSQL):
the optimistic ledger insert and its careful retry, concurrent transactions, batches in
flight together, array literals, and the schema of revision 0003."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

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
    conn = psycopg2.connect(metrics_worker.settings.database.url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT name, labels, count, sum FROM aggregated_metrics")
            assert cur.fetchall() == [("NULL", labels, 2, 4.0)]
            cur.execute("SELECT name, labels FROM metric_series")
            assert cur.fetchall() == [("NULL", labels)]
    finally:
        conn.close()


@pytest.mark.integration
def test_schema_0003_lets_aggregate_updates_stay_in_their_page(database_schema):
    conn = psycopg2.connect(database_schema)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT reloptions FROM pg_class WHERE relname = 'aggregated_metrics'")
            assert cur.fetchone() == (["fillfactor=70"],)
            cur.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'aggregated_metrics' "
                "AND indexdef LIKE '%last_seen%'"
            )
            assert cur.fetchall() == []
            with pytest.raises(psycopg2.errors.CheckViolation):
                cur.execute(
                    "INSERT INTO aggregated_metrics (name, labels, labels_hash, bucket_start, "
                    "bucket_seconds, count, sum, min, max, last, first_seen, last_seen) VALUES "
                    "('x', '{}', 'h', now(), 86401, 1, 1, 1, 1, 1, now(), now())"
                )
    finally:
        conn.rollback()
        conn.close()


def _update_counts(url: str) -> tuple[int, int]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_force_next_flush()")
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_all_tables "
                "WHERE relname = 'aggregated_metrics' AND schemaname = current_schema()"
            )
            upd, hot = cur.fetchone()
    finally:
        conn.close()
    return int(upd), int(hot)


@pytest.mark.integration
def test_aggregate_updates_are_heap_only(metrics_worker, add_samples, make_sample):
    """Repeated batches over the same series update their rows in place (HOT): no index
    entries for the new row versions."""
    url = metrics_worker.settings.database.url
    add_samples(STREAM, [make_sample("hot", 1, {"s": str(i)}) for i in range(20)])
    metrics_worker.aggregate_batch(count=20)  # inserts
    metrics_worker.engine.dispose()  # a backend reports its statistics when it ends
    time.sleep(0.2)
    before = _update_counts(url)
    for _ in range(5):
        add_samples(STREAM, [make_sample("hot", 1, {"s": str(i)}) for i in range(20)])
        metrics_worker.aggregate_batch(count=20)
    metrics_worker.engine.dispose()
    deadline = time.monotonic() + 5
    while True:  # the statistics arrive asynchronously
        upd, hot = (a - b for a, b in zip(_update_counts(url), before, strict=True))
        if upd >= 100 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert upd >= 100
    assert hot >= 0.9 * upd  # an update finding its page full is the rare exception
