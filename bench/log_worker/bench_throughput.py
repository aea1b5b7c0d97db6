"""Log worker throughput vs a bare ``_bulk`` loader, same documents, same bulk size, same ES.

    REDIS_URL=redis://127.0.0.1:6399/15 ELASTICSEARCH_URL=http://127.0.0.1:9220 \
        python bench/log_worker/bench_throughput.py [--logs 100000] [--bulk 500] [--runs 3]

* bare loader: the documents the worker would write (already transformed and encoded),
  sent with ``_bulk`` in chunks of ``--bulk`` by one process, ``--in-flight`` requests at a
  time (the worker's own setting), with the same client settings as the worker: the limit
  of this Elasticsearch on this machine;
* worker: the same records as ~500-byte entries on ``logs-stream`` (as the receivers write
  them: canonical timestamp and level), drained by one ``LogWorker`` in its long-running
  mode (read, parse, validate, transform, ``_bulk``, XACK+XDEL; ``--in-flight`` batches at
  once) in batches of ``--bulk``; the clock runs from start to the last ack.

Runs alternate (loader, worker, loader, ...) and medians are printed with the ratio; target
worker >= 0.8 x loader. Flushes the Redis database and deletes ``bench-logs-*`` indices.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import orjson
import redis
import redis.asyncio
from elasticsearch import Elasticsearch

from killkrill.workers.base import BatchResult
from killkrill.workers.logs import LogWorker
from killkrill.workers.logs.bulk import encode_bulk
from killkrill.workers.logs.sink import elasticsearch_client
from killkrill.workers.logs.template import install_template
from killkrill.workers.logs.transform import LogDocument

PREFIX = "bench-logs"
STREAM = "logs-stream"


def record(i: int) -> bytes:
    """A ~500-byte log record."""
    base = {  # as the receivers put it on the stream: canonical timestamp and level
        "timestamp": f"2024-01-06T12:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000:03d}000Z",
        "service": f"checkout-{i % 16}",
        "level": ("info", "warn", "error", "debug")[i % 4],
        "message": "",
        "request_id": f"{i:016x}",
        "http": {"method": "POST", "path": f"/api/v1/orders/{i}", "status": 200 + i % 5},
        "duration_ms": i % 997,
        "seq": i,
    }
    pad = 500 - len(orjson.dumps(base))
    base["message"] = ("order placed for customer " * 20)[: max(pad, 10)]
    return orjson.dumps(base)


def fill_stream(client: redis.Redis, payloads: list[bytes]) -> None:
    client.flushdb()
    for start in range(0, len(payloads), 10_000):
        with client.pipeline(transaction=False) as pipe:
            for p in payloads[start : start + 10_000]:
                pipe.xadd(STREAM, {"data": p, "v": "1"})
            pipe.execute()


def reset_indices(es: Elasticsearch) -> None:
    es.options(ignore_status=404).indices.delete(index=f"{PREFIX}-*", allow_no_indices=True)


async def bare_loader(es_url: str, docs: list[LogDocument], bulk: int, in_flight: int) -> float:
    """Send ``docs`` with ``_bulk`` in chunks of ``bulk``, ``in_flight`` requests at once."""
    client = elasticsearch_client(es_url, request_timeout=60)
    chunks = [docs[start : start + bulk] for start in range(0, len(docs), bulk)]
    try:
        await install_template(client, PREFIX, number_of_replicas=0)

        async def lane(mine: list[list[LogDocument]]) -> None:
            for chunk in mine:
                resp = await client.bulk(operations=encode_bulk(chunk), filter_path="errors")  # type: ignore[arg-type]
                assert not resp.body.get("errors"), "bare loader: bulk errors"

        started = time.perf_counter()
        await asyncio.gather(*(lane(chunks[n::in_flight]) for n in range(in_flight)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    return len(docs) / elapsed


async def worker_run(
    redis_url: str, es_url: str, payloads: list[bytes], bulk: int, in_flight: int
) -> float:
    """Time one LogWorker in its long-running mode from start until the stream is drained."""
    config = {
        "redis_url": redis_url,
        "elasticsearch_url": es_url,
        "elasticsearch_index": PREFIX,
        "batch_size": bulk,
        "timeout": 60,
        "number_of_replicas": 0,
        "block_ms": 50,
    }
    worker = LogWorker(config)
    worker.settings.consumer.in_flight = in_flight
    await worker.aprocess_batch(count=1)  # template, group, connections: not timed
    fill_stream(redis.from_url(redis_url), payloads)
    probe = redis.asyncio.from_url(redis_url)
    indexed = 0

    async def on_batch(result: BatchResult) -> None:
        nonlocal indexed
        indexed += result.success
        if indexed >= len(payloads):
            worker.request_stop()

    started = time.perf_counter()
    await worker.run(on_batch=on_batch)
    elapsed = time.perf_counter() - started
    left = await probe.xlen(STREAM)
    assert left == 0, f"{left} entries left on the stream"
    assert indexed == len(payloads), f"{indexed} indexed of {len(payloads)}"
    await probe.aclose()
    await worker.aclose()
    return indexed / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=int, default=100_000)
    parser.add_argument("--bulk", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--in-flight", type=int, default=2, help="Requests in flight, worker and loader alike."
    )
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    es_url = os.environ.get("ELASTICSEARCH_URL", "http://127.0.0.1:9200")
    r = redis.from_url(redis_url)
    es = Elasticsearch(es_url, request_timeout=120)

    payloads = [record(i) for i in range(args.logs)]
    print(f"{args.logs} logs of {statistics.mean(map(len, payloads)):.0f} bytes, bulk {args.bulk}")
    # The loader sends what the worker would send (same transformer, same ids shape).
    probe = LogWorker({"redis_url": redis_url, "elasticsearch_url": es_url,
                       "elasticsearch_index": PREFIX})  # fmt: skip
    docs = [probe.transformer.document(f"{i}-0", p) for i, p in enumerate(payloads)]

    loader, worker = [], []
    for run in range(args.runs):
        reset_indices(es)
        rate = asyncio.run(bare_loader(es_url, docs, args.bulk, args.in_flight))
        loader.append(rate)
        print(f"run {run + 1}: bare _bulk loader {rate:,.0f} docs/s")
        reset_indices(es)
        r.flushdb()
        rate = asyncio.run(worker_run(redis_url, es_url, payloads, args.bulk, args.in_flight))
        worker.append(rate)
        left = r.xlen(STREAM)
        print(f"run {run + 1}: log worker      {rate:,.0f} docs/s (stream left: {left})")
    reset_indices(es)
    r.flushdb()
    lm, wm = statistics.median(loader), statistics.median(worker)
    print(f"MEDIAN bare loader {lm:,.0f} docs/s | worker {wm:,.0f} docs/s | ratio {wm / lm:.2f}")


if __name__ == "__main__":
    main()
