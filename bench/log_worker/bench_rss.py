"""Log worker memory while draining a large backlog: RSS of one ``killkrill worker logs``.

    REDIS_URL=redis://127.0.0.1:6399/15 ELASTICSEARCH_URL=http://127.0.0.1:9220 \
        python bench/log_worker/bench_rss.py [--logs 1000000] [--batch-size 500]

Fills ``logs-stream`` with ``--logs`` ~500-byte entries, starts one worker process, samples
its RSS (``/proc/<pid>/status`` VmRSS) every 0.2 s until the stream is drained, then stops it
with SIGTERM. Prints the peak and median RSS and the drain rate; target peak < 200 MiB.
Flushes the Redis database and deletes ``bench-logs-*`` indices.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis
from bench_throughput import PREFIX, STREAM, record, reset_indices
from elasticsearch import Elasticsearch


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fill(client: redis.Redis, n: int) -> None:
    client.flushdb()
    chunk = 20_000
    for start in range(0, n, chunk):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + chunk)):
                pipe.xadd(STREAM, {"data": record(i), "v": "1"})
            pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    es_url = os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200")
    r = redis.from_url(redis_url)
    es = Elasticsearch(es_url, request_timeout=120)
    reset_indices(es)
    started = time.perf_counter()
    fill(r, args.logs)
    print(f"filled {args.logs:,} entries in {time.perf_counter() - started:.1f} s")

    proc = subprocess.Popen(
        [sys.executable, "-m", "killkrill", "worker", "logs",
         "--redis-url", redis_url, "--elasticsearch-url", es_url, "--index-prefix", PREFIX,
         "--batch-size", str(args.batch_size), "--ops-port", "0", "--log-level", "warning"],
    )  # fmt: skip
    samples: list[float] = []
    started = time.perf_counter()
    try:
        while r.xlen(STREAM) > 0:
            samples.append(rss_mib(proc.pid))
            time.sleep(0.2)
            if proc.poll() is not None:
                raise SystemExit(f"worker exited early with {proc.returncode}")
        elapsed = time.perf_counter() - started
        samples.append(rss_mib(proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    print(
        f"drained {args.logs:,} entries in {elapsed:.1f} s ({args.logs / elapsed:,.0f}/s, "
        f"process start included); worker exit code {code}"
    )
    print(
        f"worker RSS: peak {max(samples):.1f} MiB, median {statistics.median(samples):.1f} MiB, "
        f"{len(samples)} samples; target peak < 200 MiB"
    )
    reset_indices(es)
    r.flushdb()


if __name__ == "__main__":
    main()
