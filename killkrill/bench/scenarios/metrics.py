"""metrics: samples/s aggregated by the metrics worker vs a bare upsert loader of the same rows.

(The logic of ``bench/metrics_worker/bench.py``, which now calls this module.) Per round:

1. the metrics tables are emptied and ``samples`` samples over ``series`` distinct series
   (10 names x series/10 label sets, current timestamps) are XADDed to ``bench-stream``, as
   the receivers write them (normalised by the shared schema);
2. **worker**: one :class:`MetricsWorker` in this process drains the stream (XREADGROUP,
   parse, fold, ledger + upsert in one transaction per batch, XACK+XDEL; ``in_flight``
   batches at once) - timed;
3. **bare loader**: the same samples folded per batch beforehand (not timed), then only the
   ``INSERT ... ON CONFLICT DO UPDATE`` of those rows, one statement per batch, no ledger,
   no Redis - timed: the database's limit for this data.

Beside the rate: CPU seconds per 100k samples of this process, of PostgreSQL (the
postmaster and its backends, from ``/proc``) and of Redis over the same window.

Prometheus remote_write is the ``remote-write`` part of this scenario
(:mod:`killkrill.bench.scenarios.remote_write`).
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg2
import redis

from killkrill.bench.context import BenchContext
from killkrill.bench.proctree import TreeMeter
from killkrill.bench.results import Metric, ScenarioResult
from killkrill.db import create_engine
from killkrill.db.migrate import upgrade
from killkrill.schemas import validate_metric
from killkrill.workers.gctune import tune_for_streaming
from killkrill.workers.metrics import MetricsWorker, aggregate, parse_sample
from killkrill.workers.metrics.store import MetricStore

__all__ = [
    "STREAM",
    "Side",
    "load_stream",
    "payloads",
    "postgres_pid",
    "run",
    "run_loader",
    "run_worker",
    "truncate",
]

STREAM = "bench"

METRICS = (
    Metric("samples_per_s", "samples/s", "samples aggregated per second"),
    Metric("cpu_s_per_100k", "own CPU-s/100k", "CPU s per 100k samples of the process", "lower", 2),
    Metric("pg_cpu_s_per_100k", "PG CPU-s/100k", "", "lower", 2),
    Metric("redis_cpu_s_per_100k", "Redis CPU-s/100k", "", "lower", 2),
)


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


def postgres_pid(url: str) -> int:
    """The postmaster's pid (the parent of a backend of ours)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            row = cur.fetchone()
            assert row is not None
            backend = int(row[0])
    finally:
        conn.close()
    with open(f"/proc/{backend}/stat") as stat:
        text = stat.read()
    return int(text[text.rindex(")") + 2 :].split()[1])


def load_stream(client: redis.Redis, data: list[bytes]) -> None:
    client.delete(f"{STREAM}-stream")
    for start in range(0, len(data), 10_000):
        pipe = client.pipeline(transaction=False)
        for payload in data[start : start + 10_000]:
            pipe.xadd(f"{STREAM}-stream", {"data": payload, "v": "1"})
        pipe.execute()


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Side:
    """One timed side: seconds and CPU seconds of this process."""

    seconds: float
    cpu_s: float


def run_worker(
    config: dict[str, object], n: int, done: Callable[[], object] = lambda: None
) -> Side:
    """Drain the stream with one worker; ``done()`` is called at the end of the clock,
    before the worker's connections close (their server processes end with them)."""
    worker = MetricsWorker(config)
    try:
        cpu, started = _cpu(), time.perf_counter()
        result = asyncio.run(worker.process_stream_async(STREAM))
        side = Side(time.perf_counter() - started, _cpu() - cpu)
        done()
    finally:
        worker.close()
    assert result.success == n, dict(result)
    return side


def run_loader(
    url: str,
    data: list[bytes],
    batch: int,
    bucket_seconds: int,
    done: Callable[[], object] = lambda: None,
) -> tuple[Side, int]:
    """Upsert the pre-folded rows; ``done()`` as for :func:`run_worker`."""
    samples = [parse_sample(p) for p in data]
    batches = [
        aggregate(samples[i : i + batch], bucket_seconds) for i in range(0, len(samples), batch)
    ]
    store = MetricStore(create_engine(url), bucket_seconds=bucket_seconds)
    raw = store.engine.raw_connection()
    rows = 0
    try:
        cpu, started = _cpu(), time.perf_counter()
        for groups in batches:
            cur: Any = raw.cursor()
            with cur:
                store._upsert(cur, groups)
            raw.commit()
            rows += len(groups)
        side = Side(time.perf_counter() - started, _cpu() - cpu)
        done()
    finally:
        raw.close()
        store.engine.dispose()
    return side, rows


def _metered(
    pids: dict[int, str], work: Callable[[Callable[[], object]], Side], n: int
) -> dict[str, float]:
    """Run ``work(done)``, metering PostgreSQL and Redis until it calls ``done``."""
    meter = TreeMeter(lambda: pids, interval=0.05).start()
    side = work(meter.stop)
    usage = meter.stop()
    per = 100_000 / n
    return {
        "samples_per_s": n / side.seconds,
        "cpu_s_per_100k": side.cpu_s * per,
        "pg_cpu_s_per_100k": usage.by_role.get("postgres", 0.0) * per,
        "redis_cpu_s_per_100k": usage.by_role.get("redis", 0.0) * per,
    }


def run(ctx: BenchContext) -> list[ScenarioResult]:
    samples = 10_000 if ctx.quick else 200_000
    series, batch, bucket, in_flight = 1_000, 5_000, 3600, 2
    db_url = ctx.services.database_url
    upgrade(db_url)
    client = ctx.redis()
    pids = {postgres_pid(db_url): "postgres", ctx.services.redis_pid(): "redis"}
    config: dict[str, object] = {
        "redis_url": ctx.redis_url,
        "database_url": db_url,
        "batch_size": batch,
        "in_flight": in_flight,
        "bucket_seconds": bucket,
        "group": "bench-metrics-worker",
        "timeout": 60,
    }
    data = payloads(samples, series)
    tune_for_streaming()
    result = ScenarioResult(
        "metrics",
        "metrics worker vs bare upsert loader (PostgreSQL)",
        "bare-upsert",
        METRICS,
        params={
            "samples": samples,
            "series": series,
            "batch": batch,
            "in_flight": in_flight,
            "bucket_seconds": bucket,
        },
        notes=["the worker runs in the bench's process (own CPU = that process's)"],
    )
    try:
        for n in range(ctx.total_rounds):
            truncate(db_url)
            load_stream(client, data)
            worker = _metered(pids, lambda done: run_worker(config, samples, done), samples)
            truncate(db_url)
            loader = _metered(
                pids, lambda done: run_loader(db_url, data, batch, bucket, done)[0], samples
            )
            ctx.echo(
                f"  {ctx.round_label('metrics', n)}: worker {worker['samples_per_s']:,.0f} "
                f"samples/s | bare upsert {loader['samples_per_s']:,.0f} samples/s"
            )
            if ctx.counted(n):
                result.add("worker", worker)
                result.add("bare-upsert", loader)
    finally:
        truncate(db_url)
        client.delete(f"{STREAM}-stream")
        client.close()
    return [result]
