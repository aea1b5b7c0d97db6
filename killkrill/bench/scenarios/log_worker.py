"""log-worker: one log worker vs a bare ``_bulk`` loader, same documents, same Elasticsearch.

(The logic of ``bench/log_worker/bench_throughput.py``, which now calls this module.)

- **bare loader**: the documents the worker would write (already transformed and encoded),
  sent with ``_bulk`` in chunks of ``bulk``, ``in_flight`` requests at a time (the worker's
  own setting), with the worker's client settings: the limit of this Elasticsearch here;
- **worker**: the same records as ~500-byte entries on ``logs-stream`` (as the receivers
  write them), drained by one ``LogWorker`` in its long-running mode (read, parse,
  validate, transform, ``_bulk``, XACK+XDEL) in batches of ``bulk``.

Each side runs in a fresh spawned process, set up like ``killkrill worker logs`` sets up
its own (start-up objects frozen for the garbage collector). The clock runs from the first
request to the last ``_bulk`` answer (loader) or the last ack (worker). Besides the rate,
CPU per 100k documents of that process, of Elasticsearch (``_nodes/stats``) and of Redis
(``INFO cpu``) over the same window.

Two placements, two scenarios: ``log-worker`` (everything shares every CPU: the worker's
and Redis's CPU is taken from Elasticsearch) and ``log-worker-pin`` (Elasticsearch's
threads on the upper half of the CPUs, Redis and the bench on the lower half, as when
Elasticsearch has nodes of its own). Rounds alternate loader and worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson
import redis
import redis.asyncio
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from killkrill.bench.context import BenchContext
from killkrill.bench.proctree import read_proc
from killkrill.bench.results import Metric, ScenarioResult
from killkrill.config import ElasticsearchSettings
from killkrill.esclient import elasticsearch_client
from killkrill.workers.base import BatchResult
from killkrill.workers.gctune import tune_for_streaming
from killkrill.workers.logs import LogWorker
from killkrill.workers.logs.bulk import encode_bulk
from killkrill.workers.logs.template import install_template
from killkrill.workers.logs.transform import LogDocument

__all__ = [
    "STREAM",
    "Meters",
    "Run",
    "fill_stream",
    "loader_process",
    "pinned",
    "record",
    "run",
    "timed",
    "worker_process",
]

STREAM = "logs-stream"

METRICS = (
    Metric("docs_per_s", "docs/s", "documents/s"),
    Metric("cpu_s_per_100k", "own CPU-s/100k", "CPU s per 100k docs of the process", "lower", 2),
    Metric("redis_cpu_s_per_100k", "Redis CPU-s/100k", "", "lower", 2),
    Metric("es_cpu_s_per_100k", "ES CPU-s/100k", "", "lower", 2),
)


def record(i: int) -> bytes:
    """A ~500-byte log record, as the receivers put it on the stream."""
    base: dict[str, Any] = {
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


def fill_stream(client: redis.Redis, payloads: list[bytes], stream: str = STREAM) -> None:
    """XADD ``payloads`` to ``stream`` in pipelines of 10,000."""
    for start in range(0, len(payloads), 10_000):
        with client.pipeline(transaction=False) as pipe:
            for p in payloads[start : start + 10_000]:
                pipe.xadd(stream, {"data": p, "v": "1"})
            pipe.execute()


def cpu_seconds() -> float:
    """CPU time (user + system) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    """One timed run: documents per second and CPU seconds of each process over it."""

    rate: float
    docs: int
    own_cpu: float
    es_cpu: float = 0.0
    redis_cpu: float = 0.0

    def figures(self) -> dict[str, float]:
        per = 100_000 / self.docs
        return {
            "docs_per_s": self.rate,
            "cpu_s_per_100k": self.own_cpu * per,
            "es_cpu_s_per_100k": self.es_cpu * per,
            "redis_cpu_s_per_100k": self.redis_cpu * per,
        }

    def line(self, label: str) -> str:
        per = 1e6 / self.docs
        return (
            f"{label} {self.rate:>8,.0f} docs/s | CPU per doc: own {self.own_cpu * per:5.1f} us, "
            f"elasticsearch {self.es_cpu * per:5.1f} us, redis {self.redis_cpu * per:4.1f} us"
        )


class Meters:
    """CPU seconds of Elasticsearch and Redis: from ``/proc`` when they run on this machine
    (exact), else from their own stats (``_nodes/stats`` refreshes its figure only about
    once a second, too coarse for a short run)."""

    def __init__(self, es: Elasticsearch, r: redis.Redis) -> None:
        self.es, self.r = es, r
        nodes: Any = es.nodes.info(metric="process").body["nodes"]
        pids = [int(n["process"]["id"]) for n in nodes.values()]
        local = [pid for pid in pids if (s := read_proc(pid)) is not None and s.name == "java"]
        self.es_pids = local if len(local) == len(pids) else []
        redis_pid = int(r.info("server")["process_id"])
        self.redis_pid = redis_pid if read_proc(redis_pid) is not None else None

    def read(self) -> tuple[float, float]:
        if self.es_pids:
            es_s = sum(s.cpu_s for pid in self.es_pids if (s := read_proc(pid)) is not None)
        else:
            nodes: Any = self.es.nodes.stats(metric="process").body["nodes"]
            es_s = sum(n["process"]["cpu"]["total_in_millis"] for n in nodes.values()) / 1000
        sample = read_proc(self.redis_pid) if self.redis_pid is not None else None
        if sample is not None:
            return es_s, sample.cpu_s
        info: Any = self.r.info("cpu")
        return es_s, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --- the two sides, each in its own process ------------------------------------------------


def loader_process(
    es_url: str, prefix: str, logs: int, bulk: int, in_flight: int, go: Any, out: Connection
) -> None:
    """Build the documents the worker would send, then time sending them (one process)."""
    probe = LogWorker({"redis_url": "redis://127.0.0.1:1/0", "elasticsearch_url": es_url,
                       "elasticsearch_index": prefix})  # fmt: skip
    docs = [probe.transformer.document(f"{i}-0", record(i)) for i in range(logs)]
    tune_for_streaming()
    out.send("ready")
    go.wait()
    out.send(asyncio.run(bare_loader(es_url, prefix, docs, bulk, in_flight)))


async def bare_loader(
    es_url: str, prefix: str, docs: list[LogDocument], bulk: int, in_flight: int
) -> Run:
    """Send ``docs`` with ``_bulk`` in chunks of ``bulk``, ``in_flight`` requests at once."""
    client = elasticsearch_client(ElasticsearchSettings(url=SecretStr(es_url), request_timeout=60))
    chunks = [docs[start : start + bulk] for start in range(0, len(docs), bulk)]
    try:
        await install_template(client, prefix, number_of_replicas=0)
        await client.cluster.health()  # connection opened: not timed

        async def lane(mine: list[list[LogDocument]]) -> None:
            for chunk in mine:
                resp = await client.bulk(operations=encode_bulk(chunk), filter_path="errors")  # type: ignore[arg-type]
                assert not resp.body.get("errors"), "bare loader: bulk errors"

        cpu, started = cpu_seconds(), time.perf_counter()
        await asyncio.gather(*(lane(chunks[n::in_flight]) for n in range(in_flight)))
        elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    finally:
        await client.close()
    return Run(len(docs) / elapsed, len(docs), cpu)


def worker_process(
    redis_url: str,
    es_url: str,
    prefix: str,
    logs: int,
    bulk: int,
    in_flight: int,
    go: Any,
    out: Connection,
) -> None:
    """Prepare one LogWorker, wait for the stream to be filled, time draining it."""
    out.send(asyncio.run(_worker_run(redis_url, es_url, prefix, logs, bulk, in_flight, go, out)))


async def _worker_run(
    redis_url: str,
    es_url: str,
    prefix: str,
    logs: int,
    bulk: int,
    in_flight: int,
    go: Any,
    out: Connection,
) -> Run:
    config = {
        "redis_url": redis_url,
        "elasticsearch_url": es_url,
        "elasticsearch_index": prefix,
        "batch_size": bulk,
        "timeout": 60,
        "number_of_replicas": 0,
        "block_ms": 50,
    }
    worker = LogWorker(config)
    worker.settings.consumer.in_flight = in_flight
    await worker.aprocess_batch(count=1)  # template, group, connections: not timed
    tune_for_streaming()  # as `killkrill worker logs` does once started
    out.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, go.wait)  # the parent fills
    indexed = 0
    finished = 0.0
    cpu_end = 0.0

    async def on_batch(result: BatchResult) -> None:
        nonlocal indexed, finished, cpu_end
        indexed += result.success
        if indexed >= logs and not finished:
            finished, cpu_end = time.perf_counter(), cpu_seconds()  # the last ack
            worker.request_stop()

    cpu, started = cpu_seconds(), time.perf_counter()
    await worker.run(on_batch=on_batch)
    probe = redis.asyncio.from_url(redis_url)
    left = await probe.xlen(STREAM)
    await probe.aclose()
    await worker.aclose()
    assert left == 0, f"{left} entries left on the stream"
    assert indexed == logs, f"{indexed} indexed of {logs}"
    return Run(indexed / (finished - started), indexed, cpu_end - cpu)


# --- CPU placement (--pin) ------------------------------------------------------------------


def _set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)


@contextlib.contextmanager
def pinned(es: Elasticsearch, r: redis.Redis) -> Iterator[str]:
    """Elasticsearch on the upper half of the CPUs, Redis and this process (so the spawned
    loader and worker) on the lower half; everything back on every CPU afterwards."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("pinning needs at least 2 CPUs")
    half = len(cpus) // 2
    own, theirs = set(cpus[:half]), set(cpus[half:])
    nodes: Any = es.nodes.info(node_id="_local", metric="process").body["nodes"]
    es_pid = int(next(iter(nodes.values()))["process"]["id"])
    redis_pid = int(r.info("server")["process_id"])
    placed = {es_pid: theirs, redis_pid: own, os.getpid(): own}
    try:
        for pid, where in placed.items():
            _set_affinity(pid, where)
        yield f"elasticsearch on CPUs {sorted(theirs)}, redis and the bench on {sorted(own)}"
    finally:
        for pid in placed:
            with contextlib.suppress(OSError):
                _set_affinity(pid, set(cpus))


# --- the parent: fills, meters, alternates ---------------------------------------------------


def timed(
    target: Callable[..., None],
    args: tuple[Any, ...],
    meters: Meters,
    before_go: Callable[[], None] | None = None,
) -> Run:
    """Run ``target`` in a fresh (spawned) process; meter ES and Redis around its clock."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, go, child))
    proc.start()
    assert parent.recv() == "ready"
    if before_go is not None:
        before_go()
    es0, redis0 = meters.read()
    go.set()
    result: Run = parent.recv()
    es1, redis1 = meters.read()
    proc.join()
    result.es_cpu, result.redis_cpu = es1 - es0, redis1 - redis0
    return result


def one_round(
    redis_url: str,
    es_url: str,
    prefix: str,
    payloads: list[bytes],
    bulk: int,
    in_flight: int,
    es: Elasticsearch,
    r: redis.Redis,
) -> tuple[Run, Run]:
    """The loader, then the worker, on fresh indices and a fresh stream."""
    meters = Meters(es, r)
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", allow_no_indices=True)
    loader = timed(loader_process, (es_url, prefix, len(payloads), bulk, in_flight), meters)
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", allow_no_indices=True)
    r.flushdb()
    worker = timed(
        worker_process,
        (redis_url, es_url, prefix, len(payloads), bulk, in_flight),
        meters,
        before_go=lambda: fill_stream(r, payloads),
    )
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", allow_no_indices=True)
    r.flushdb()
    return loader, worker


def run(ctx: BenchContext) -> list[ScenarioResult]:
    logs = 10_000 if ctx.quick else 200_000
    bulk, in_flight = 500, 2
    payloads = [record(i) for i in range(logs)]
    es = Elasticsearch(ctx.es_url, request_timeout=120)
    r = ctx.redis()
    prefix = ctx.index_prefix("lw")
    params = {"logs": logs, "record_bytes": 500, "bulk": bulk, "in_flight": in_flight}
    results: list[ScenarioResult] = []
    placements: list[tuple[str, str, Any]] = [
        ("log-worker", "all processes share every CPU", contextlib.nullcontext("shared")),
        ("log-worker-pin", "Elasticsearch on CPUs of its own (pinned)", pinned(es, r)),
    ]
    try:
        for key, title, placement in placements:
            result = ScenarioResult(
                key, f"log worker vs bare _bulk loader: {title}", "bare-loader", METRICS,
                params=dict(params),
            )  # fmt: skip
            with placement as where:
                ctx.echo(f"  CPUs: {where}")
                for n in range(ctx.total_rounds):
                    label = ctx.round_label(key, n)
                    loader, worker = one_round(
                        ctx.redis_url, ctx.es_url, prefix, payloads, bulk, in_flight, es, r
                    )
                    ctx.echo(loader.line(f"  {label}: bare _bulk loader"))
                    ctx.echo(worker.line(f"  {label}: log worker     "))
                    if ctx.counted(n):
                        result.add("bare-loader", loader.figures())
                        result.add("worker", worker.figures())
            results.append(result)
    finally:
        es.close()
        r.close()
    return results
