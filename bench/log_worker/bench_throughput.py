"""Log worker throughput vs a bare ``_bulk`` loader, same documents, same bulk size, same ES.

    REDIS_URL=redis://127.0.0.1:6399/15 ELASTICSEARCH_URL=http://127.0.0.1:9220 \
        python bench/log_worker/bench_throughput.py [--logs 100000] [--bulk 500] [--runs 3] \
        [--in-flight 2] [--pin]

The same measurement as ``killkrill bench log-worker`` (whose module,
``killkrill/bench/scenarios/log_worker.py``, holds the logic and explains it), on the
services you point it at. Figures from the last runs: ``bench/log_worker/README.md``.

``--pin`` gives Elasticsearch CPUs of its own (the upper half; Redis and the bench the
lower half); without it all share every CPU. ``--warmup`` rounds (default 1) are not
counted; then runs alternate (loader, worker, ...) and medians are printed with the ratio
and the ratio of each round; target worker >= 0.8 x loader. **Flushes the Redis database**
and deletes ``bench-logs-*`` indices.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics

import redis
from elasticsearch import Elasticsearch

from killkrill.bench.scenarios.log_worker import Run, one_round, pinned, record

PREFIX = "bench-logs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--bulk", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="Rounds run first, not counted.")
    parser.add_argument(
        "--in-flight", type=int, default=2, help="Requests in flight, worker and loader alike."
    )
    parser.add_argument(
        "--pin", action="store_true", help="Give Elasticsearch CPUs of its own (see above)."
    )
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    es_url = os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200")
    r = redis.from_url(redis_url)
    es = Elasticsearch(es_url, request_timeout=120)
    payloads = [record(i) for i in range(args.logs)]
    print(
        f"{args.logs} logs of {statistics.mean(map(len, payloads)):.0f} bytes, bulk {args.bulk}, "
        f"{args.in_flight} in flight"
    )
    loader: list[Run] = []
    worker: list[Run] = []
    with pinned(es, r) if args.pin else contextlib.nullcontext("all on every CPU") as placement:
        print(f"CPUs: {placement}")
        r.flushdb()
        for n in range(args.warmup + args.runs):
            label = f"run {n - args.warmup + 1}" if n >= args.warmup else "warm-up"
            lr, wr = one_round(
                redis_url, es_url, PREFIX, payloads, args.bulk, args.in_flight, es, r
            )
            print(lr.line(f"{label}: bare _bulk loader"))
            print(wr.line(f"{label}: log worker     "))
            if n >= args.warmup:
                loader.append(lr)
                worker.append(wr)
    lm = statistics.median(x.rate for x in loader)
    wm = statistics.median(x.rate for x in worker)
    pairs = [w.rate / x.rate for x, w in zip(loader, worker, strict=True)]
    own = statistics.median(x.own_cpu / x.docs * 1e6 for x in worker)
    # On a shared machine a slow spell hits one or two runs: the ratio of each round's pair
    # (run back to back) is steadier than the ratio of the two medians; both are printed.
    print(f"ratio per round (worker / the loader run just before it): "
          f"{', '.join(f'{p:.2f}' for p in pairs)}; median {statistics.median(pairs):.2f}")  # fmt: skip
    print(f"MEDIAN bare loader {lm:,.0f} docs/s | worker {wm:,.0f} docs/s | ratio {wm / lm:.2f} "
          f"| worker CPU {own:.1f} us/doc")  # fmt: skip


if __name__ == "__main__":
    main()
