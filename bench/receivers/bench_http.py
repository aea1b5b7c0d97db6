"""HTTP ingest throughput: wrk (a second process) posting to one receiver process.

    REDIS_URL=redis://127.0.0.1:6379/15 python bench/receivers/bench_http.py [--runs 3] [--seconds 10]

Scenarios: batches of 1,000 log records per request (target >= 50,000 records/s) and one
record per request (target >= 3,000 req/s). Each run starts from an empty stream; the
stream length is checked against what wrk counted, so records/s are records in Redis.
Needs `wrk` (Debian: wrk). Flushes the Redis database it is given.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import orjson
from _common import client, free_port, median, start_receiver, stop

from killkrill.bench.scenarios.http import records, run_wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    redis = client()
    redis.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="kk-bench-http-"))
    port = free_port()
    proc = start_receiver(
        ["http", "--no-auth", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        f"http://127.0.0.1:{port}/healthz",
        tmp / "receiver.log",
    )
    try:
        scenarios = [("batch-1000", 1000, 8), ("single", 1, 32)]
        for name, size, connections in scenarios:
            body = tmp / f"{name}.json"
            batch = records(size)
            body.write_bytes(orjson.dumps(batch if size > 1 else batch[0]))
            results = []
            for run in range(args.runs):
                redis.flushdb()
                rps, done = run_wrk(f"http://127.0.0.1:{port}/", body, args.seconds, connections)
                stored = redis.xlen("logs-stream")
                assert stored >= done * size, (stored, done * size)
                results.append(rps * size)
                print(f"{name} run {run + 1}: {rps:,.0f} req/s = {rps * size:,.0f} records/s")
            unit = "records/s" if size > 1 else "req/s (= records/s)"
            print(f"{name} MEDIAN: {median(results):,.0f} {unit}")
    finally:
        code = stop(proc)
        redis.flushdb()
        print(f"receiver exited with {code}")


if __name__ == "__main__":
    main()
