"""How the aggregates table takes the worker's updates: heap-only (HOT) share and layout.

    REDIS_URL=... DATABASE_URL=... python bench/metrics_worker/bench_hot_updates.py
        [--series 200] [--rounds 10]

Every batch updates the current bucket of each series it touches. Revision 0003 dropped the
index on ``last_seen`` (which every update changes) and set ``fillfactor = 70``, so the new
row version fits in the same page without new index entries: a heap-only tuple update,
about half the cost of a regular one. This run empties the metrics tables, aggregates
``--series`` series once (inserts), then ``--rounds`` more batches over the same series
(updates), and prints the table's storage options, the indexes covering ``last_seen``
(expected: none) and the share of the updates that were heap-only (expected: >= 90 %).
This is a performance property, not a behaviour a user sees, hence a bench, not a test.
"""

from __future__ import annotations

import argparse
import os
import time

import orjson
import psycopg2
import redis

from killkrill.db.migrate import upgrade
from killkrill.workers.metrics import MetricsWorker

STREAM = "bench-hot"


def _updates(url: str) -> tuple[int, int]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_stat_force_next_flush()")
            cur.execute("SELECT pg_stat_clear_snapshot()")
            cur.execute(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_all_tables "
                "WHERE relname = 'aggregated_metrics'"
            )
            upd, hot = cur.fetchone()
    finally:
        conn.close()
    return int(upd), int(hot)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    redis_url = os.environ["REDIS_URL"]
    url = os.environ.get("DATABASE_URL") or os.environ["TEST_DATABASE_URL"]
    upgrade(url)
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE aggregated_metrics, metric_series, metric_applied_entries")
        cur.execute("SELECT reloptions FROM pg_class WHERE relname = 'aggregated_metrics'")
        print(f"reloptions: {cur.fetchone()[0]}")
        cur.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'aggregated_metrics' "
            "AND indexdef LIKE '%last_seen%'"
        )
        print(f"indexes on last_seen: {[r[0] for r in cur.fetchall()]}")
    conn.close()
    client = redis.from_url(redis_url)
    client.delete(f"{STREAM}-stream")
    config = {
        "redis_url": redis_url,
        "database_url": url,
        "batch_size": args.series,
        "bucket_seconds": 3600,
        "group": "bench-hot",
    }

    def batch() -> None:
        now = time.time()
        pipe = client.pipeline(transaction=False)
        for i in range(args.series):
            record = {"name": "hot", "value": 1.0, "labels": {"s": str(i)}, "timestamp": now}
            pipe.xadd(f"{STREAM}-stream", {"data": orjson.dumps(record), "v": "1"})
        pipe.execute()
        worker.aggregate_batch(count=args.series, stream=STREAM)

    with MetricsWorker(config) as worker:
        batch()  # inserts
        worker.engine.dispose()  # a backend reports its statistics when it ends
        before = _updates(url)
        for _ in range(args.rounds):
            batch()
        worker.engine.dispose()
    expected = args.series * args.rounds
    deadline = time.monotonic() + 10
    while True:  # the statistics arrive asynchronously
        upd, hot = (a - b for a, b in zip(_updates(url), before, strict=True))
        if upd >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    client.delete(f"{STREAM}-stream")
    print(f"updates: {upd} (expected {expected}), heap-only: {hot} ({hot / max(upd, 1):.1%})")


if __name__ == "__main__":
    main()
