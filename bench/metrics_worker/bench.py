"""Metrics worker throughput vs. a bare loader of the same pre-aggregated rows.

    REDIS_URL=... DATABASE_URL=... python bench/metrics_worker/bench.py [--samples 200000]
        [--series 1000] [--batch-size 5000] [--in-flight 2] [--timestamps canonical|epoch]
        [--runs 3]

Each run:

1. empties the metrics tables and XADDs ``--samples`` samples over ``--series`` distinct
   series (10 names x series/10 label sets, current timestamps) to ``bench-stream``. With
   ``--timestamps canonical`` (default) the records are what the receivers write to the
   stream (normalised by the shared schema: RFC 3339 UTC timestamps); with ``epoch`` the
   timestamp is left as epoch seconds (float), as a foreign writer might send it;
2. **worker**: one :class:`MetricsWorker` in this process drains the stream (XREADGROUP,
   parse, fold, ledger + upsert in one transaction per batch, XACK+XDEL; ``--in-flight``
   batches at once, as ``process_stream_async`` and the long-running mode do) - timed;
3. **bare loader**: the same samples folded per batch beforehand (not timed), then only the
   ``INSERT ... ON CONFLICT DO UPDATE`` of those rows, one statement per batch, no ledger,
   no Redis - timed. That is the database's limit for this data.

Prints per run and the medians: samples/s of each and the worker/loader ratio.

The process is set up as ``killkrill worker metrics`` sets up its own (start-up objects
frozen for the garbage collector, :func:`killkrill.workers.gctune.tune_for_streaming`) once
the payloads are built, before the first run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import orjson
import psycopg2
import redis

from killkrill.db import create_engine
from killkrill.db.migrate import upgrade
from killkrill.schemas import validate_metric
from killkrill.workers.gctune import tune_for_streaming
from killkrill.workers.metrics import MetricsWorker, aggregate, parse_sample
from killkrill.workers.metrics.store import MetricStore

STREAM = "bench"


def payloads(n: int, series: int, timestamps: str = "canonical") -> list[bytes]:
    now = time.time()
    per_name = max(1, series // 10)
    records = (
        {
            "name": f"bench_metric_{i % 10}",
            "value": float(i % 97),
            "labels": {"instance": f"host-{(i // 10) % per_name}", "job": "bench"},
            "timestamp": now + i * 1e-5,
            "type": "gauge",
        }
        for i in range(n)
    )
    if timestamps == "canonical":  # as the receivers store them
        return [orjson.dumps(validate_metric(r)) for r in records]
    return [orjson.dumps(r) for r in records]


def truncate(url: str) -> None:
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE aggregated_metrics, metric_series, metric_applied_entries")
    conn.close()


def load_stream(client: redis.Redis, data: list[bytes]) -> None:
    client.delete(f"{STREAM}-stream")
    for start in range(0, len(data), 10_000):
        pipe = client.pipeline(transaction=False)
        for payload in data[start : start + 10_000]:
            pipe.xadd(f"{STREAM}-stream", {"data": payload, "v": "1"})
        pipe.execute()


def run_worker(config: dict[str, object], n: int) -> float:
    worker = MetricsWorker(config)
    try:
        started = time.perf_counter()
        result = asyncio.run(worker.process_stream_async(STREAM))
        elapsed = time.perf_counter() - started
    finally:
        worker.close()
    assert result.success == n, dict(result)
    return elapsed


def run_loader(url: str, data: list[bytes], batch: int, bucket_seconds: int) -> tuple[float, int]:
    samples = [parse_sample(p) for p in data]
    batches = [
        aggregate(samples[i : i + batch], bucket_seconds) for i in range(0, len(samples), batch)
    ]
    store = MetricStore(create_engine(url), bucket_seconds=bucket_seconds)
    raw = store.engine.raw_connection()
    rows = 0
    try:
        started = time.perf_counter()
        for groups in batches:
            with raw.cursor() as cur:
                store._upsert(cur, groups)
            raw.commit()
            rows += len(groups)
        elapsed = time.perf_counter() - started
    finally:
        raw.close()
        store.engine.dispose()
    return elapsed, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--series", type=int, default=1_000)
    ap.add_argument("--batch-size", type=int, default=5_000)
    ap.add_argument("--bucket-seconds", type=int, default=3600)
    ap.add_argument("--in-flight", type=int, default=2)
    ap.add_argument("--timestamps", choices=("canonical", "epoch"), default="canonical")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    redis_url = os.environ["REDIS_URL"]
    db_url = os.environ.get("DATABASE_URL") or os.environ["TEST_DATABASE_URL"]
    upgrade(db_url)
    client = redis.from_url(redis_url)
    config = {
        "redis_url": redis_url,
        "database_url": db_url,
        "batch_size": args.batch_size,
        "in_flight": args.in_flight,
        "bucket_seconds": args.bucket_seconds,
        "group": "bench-metrics-worker",
        "timeout": 60,
    }
    data = payloads(args.samples, args.series, args.timestamps)
    tune_for_streaming()
    worker_rates: list[float] = []
    loader_rates: list[float] = []
    print(
        f"{args.samples} samples, {args.series} series, batch {args.batch_size}, "
        f"in flight {args.in_flight}, {args.timestamps} timestamps, {os.cpu_count()} cores"
    )
    for run in range(1, args.runs + 1):
        truncate(db_url)
        load_stream(client, data)
        w = run_worker(config, args.samples)
        truncate(db_url)
        loader_s, rows = run_loader(db_url, data, args.batch_size, args.bucket_seconds)
        worker_rates.append(args.samples / w)
        loader_rates.append(args.samples / loader_s)
        print(
            f"run {run}: worker {args.samples / w:,.0f} samples/s ({w:.2f} s) | bare loader "
            f"{args.samples / loader_s:,.0f} samples/s ({loader_s:.2f} s, {rows} rows, "
            f"{rows / loader_s:,.0f} rows/s) | ratio {(args.samples / w) / (args.samples / loader_s):.3f}"
        )
    truncate(db_url)
    client.delete(f"{STREAM}-stream")
    wm, lm = statistics.median(worker_rates), statistics.median(loader_rates)
    print(
        f"median: worker {wm:,.0f} samples/s | bare loader {lm:,.0f} samples/s | "
        f"ratio {wm / lm:.3f}"
    )


if __name__ == "__main__":
    main()
