"""Metrics worker throughput vs. a bare loader of the same pre-aggregated rows.

    REDIS_URL=... DATABASE_URL=... python bench/metrics_worker/bench.py [--samples 200000]
        [--series 1000] [--batch-size 5000] [--in-flight 2] [--timestamps canonical|epoch]
        [--runs 3]

The same measurement as ``killkrill bench metrics`` (whose module,
``killkrill/bench/scenarios/metrics.py``, holds the logic and explains it), on the services
you point it at. With ``--timestamps epoch`` the records keep epoch-second timestamps, as a
foreign writer might send them (``canonical``, the default: as the receivers store them).
Prints per run and the medians: samples/s of each and the worker/loader ratio. **Empties
the metrics tables** of ``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import os
import statistics

import redis

from killkrill.bench.scenarios.metrics import (
    load_stream,
    payloads,
    run_loader,
    run_worker,
    truncate,
)
from killkrill.db.migrate import upgrade
from killkrill.workers.gctune import tune_for_streaming


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
        w = run_worker(config, args.samples).seconds
        truncate(db_url)
        side, rows = run_loader(db_url, data, args.batch_size, args.bucket_seconds)
        loader_s = side.seconds
        worker_rates.append(args.samples / w)
        loader_rates.append(args.samples / loader_s)
        print(
            f"run {run}: worker {args.samples / w:,.0f} samples/s ({w:.2f} s) | bare loader "
            f"{args.samples / loader_s:,.0f} samples/s ({loader_s:.2f} s, {rows} rows, "
            f"{rows / loader_s:,.0f} rows/s) | ratio {(args.samples / w) / (args.samples / loader_s):.3f}"
        )
    truncate(db_url)
    client.delete("bench-stream")
    wm, lm = statistics.median(worker_rates), statistics.median(loader_rates)
    print(
        f"median: worker {wm:,.0f} samples/s | bare loader {lm:,.0f} samples/s | "
        f"ratio {wm / lm:.3f}"
    )


if __name__ == "__main__":
    main()
