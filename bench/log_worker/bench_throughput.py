"""Log worker throughput vs a bare ``_bulk`` loader, same documents, same bulk size, same ES.

    REDIS_URL=redis://127.0.0.1:6399/15 ELASTICSEARCH_URL=http://127.0.0.1:9220 \
        python bench/log_worker/bench_throughput.py [--logs 100000] [--bulk 500] [--runs 3] \
        [--in-flight 2] [--pin]

Figures from the last runs: ``bench/log_worker/README.md``.

* bare loader: the documents the worker would write (already transformed and encoded),
  sent with ``_bulk`` in chunks of ``--bulk``, ``--in-flight`` requests at a time (the
  worker's own setting), with the same client settings as the worker: the limit of this
  Elasticsearch on this machine;
* worker: the same records as ~500-byte entries on ``logs-stream`` (as the receivers write
  them: canonical timestamp and level), drained by one ``LogWorker`` in its long-running
  mode (read, parse, validate, transform, ``_bulk``, XACK+XDEL; ``--in-flight`` batches at
  once) in batches of ``--bulk``.

Each side runs in a fresh process of its own (spawned, so neither carries the other's data
or the bench's), set up like ``killkrill worker logs`` sets up its process (start-up objects
frozen for the garbage collector, see :mod:`killkrill.workers.gctune`). The clock runs from
the first request to the last ``_bulk`` answer (loader) or the last ack (worker). Beside the
rate, the CPU time per document of that process, of Elasticsearch (``_nodes/stats``) and of
Redis (``INFO cpu``) over the same window is printed.

``--pin`` gives Elasticsearch CPUs of its own: every thread of its process is pinned to the
upper half of this machine's CPUs, Redis and the bench's processes (parent, loader, worker)
to the lower half (on 2 CPUs: one each), as when Elasticsearch runs on nodes of its own.
Without it (the default) all of them share every CPU, so each microsecond the worker and
Redis spend per document is taken from Elasticsearch. The affinities are restored at the
end.

``--warmup`` rounds (default 1: a cold Elasticsearch is much slower) are run and not counted;
then runs alternate (loader, worker, loader, ...) and medians are printed with the ratio,
and the ratio of each round (steadier when something else loads the machine for a while);
target worker >= 0.8 x loader. Flushes the Redis database and deletes ``bench-logs-*``
indices.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import orjson
import redis
import redis.asyncio
from elasticsearch import Elasticsearch
from pydantic import SecretStr

from killkrill.config import ElasticsearchSettings
from killkrill.esclient import elasticsearch_client
from killkrill.workers.base import BatchResult
from killkrill.workers.gctune import tune_for_streaming
from killkrill.workers.logs import LogWorker
from killkrill.workers.logs.bulk import encode_bulk
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


def fill_stream(client: redis.Redis, payloads: list[bytes], *, flush: bool = True) -> None:
    if flush:
        client.flushdb()
    for start in range(0, len(payloads), 10_000):
        with client.pipeline(transaction=False) as pipe:
            for p in payloads[start : start + 10_000]:
                pipe.xadd(STREAM, {"data": p, "v": "1"})
            pipe.execute()


def reset_indices(es: Elasticsearch) -> None:
    es.options(ignore_status=404).indices.delete(index=f"{PREFIX}-*", allow_no_indices=True)


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

    def line(self, label: str) -> str:
        per = 1e6 / self.docs
        return (
            f"{label} {self.rate:>8,.0f} docs/s | CPU per doc: own {self.own_cpu * per:5.1f} us, "
            f"elasticsearch {self.es_cpu * per:5.1f} us, redis {self.redis_cpu * per:4.1f} us"
        )


class Meters:
    """CPU seconds of Elasticsearch (all nodes) and Redis, read from their own stats."""

    def __init__(self, es: Elasticsearch, r: redis.Redis) -> None:
        self.es, self.r = es, r

    def read(self) -> tuple[float, float]:
        nodes: Any = self.es.nodes.stats(metric="process").body["nodes"]
        es_ms = sum(n["process"]["cpu"]["total_in_millis"] for n in nodes.values())
        info: Any = self.r.info("cpu")
        return es_ms / 1000, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


# --- the two sides, each in its own process ------------------------------------------------


def loader_process(
    es_url: str, logs: int, bulk: int, in_flight: int, go: Any, out: Connection
) -> None:
    """Build the documents the worker would send, then time sending them (one process)."""
    probe = LogWorker({"redis_url": "redis://127.0.0.1:1/0", "elasticsearch_url": es_url,
                       "elasticsearch_index": PREFIX})  # fmt: skip
    docs = [probe.transformer.document(f"{i}-0", record(i)) for i in range(logs)]
    tune_for_streaming()
    out.send("ready")
    go.wait()
    out.send(asyncio.run(bare_loader(es_url, docs, bulk, in_flight)))


async def bare_loader(es_url: str, docs: list[LogDocument], bulk: int, in_flight: int) -> Run:
    """Send ``docs`` with ``_bulk`` in chunks of ``bulk``, ``in_flight`` requests at once."""
    client = elasticsearch_client(ElasticsearchSettings(url=SecretStr(es_url), request_timeout=60))
    chunks = [docs[start : start + bulk] for start in range(0, len(docs), bulk)]
    try:
        await install_template(client, PREFIX, number_of_replicas=0)
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
    redis_url: str, es_url: str, logs: int, bulk: int, in_flight: int, go: Any, out: Connection
) -> None:
    """Prepare one LogWorker, wait for the stream to be filled, time draining it."""
    out.send(asyncio.run(worker_run(redis_url, es_url, logs, bulk, in_flight, go, out)))


async def worker_run(
    redis_url: str, es_url: str, logs: int, bulk: int, in_flight: int, go: Any, out: Connection
) -> Run:
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


def _threads(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def _set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (threads it starts later inherit it)."""
    for tid in _threads(pid):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def pinned(es: Elasticsearch, r: redis.Redis) -> Iterator[str]:
    """Elasticsearch on the upper half of the CPUs, Redis and this process (so the spawned
    loader and worker) on the lower half; everything back on every CPU afterwards."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
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


def timed(target: Any, args: tuple[Any, ...], meters: Meters, before_go: Any = None) -> Run:
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
    run: Run = parent.recv()
    es1, redis1 = meters.read()
    proc.join()
    run.es_cpu, run.redis_cpu = es1 - es0, redis1 - redis0
    return run


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
    meters = Meters(es, r)

    with pinned(es, r) if args.pin else contextlib.nullcontext("all on every CPU") as placement:
        print(f"CPUs: {placement}")
        rounds(args, redis_url, es_url, es, r, meters)


def rounds(
    args: argparse.Namespace,
    redis_url: str,
    es_url: str,
    es: Elasticsearch,
    r: redis.Redis,
    meters: Meters,
) -> None:
    """The warm-up and timed rounds, then the medians and ratios."""
    payloads = [record(i) for i in range(args.logs)]
    print(
        f"{args.logs} logs of {statistics.mean(map(len, payloads)):.0f} bytes, bulk {args.bulk}, "
        f"{args.in_flight} in flight"
    )
    loader: list[Run] = []
    worker: list[Run] = []
    for n in range(args.warmup + args.runs):
        label = f"run {n - args.warmup + 1}" if n >= args.warmup else "warm-up"
        reset_indices(es)
        run = timed(loader_process, (es_url, args.logs, args.bulk, args.in_flight), meters)
        print(run.line(f"{label}: bare _bulk loader"))
        if n >= args.warmup:
            loader.append(run)
        reset_indices(es)
        r.flushdb()
        run = timed(
            worker_process,
            (redis_url, es_url, args.logs, args.bulk, args.in_flight),
            meters,
            before_go=lambda: fill_stream(r, payloads, flush=False),
        )
        print(run.line(f"{label}: log worker     "))
        if n >= args.warmup:
            worker.append(run)
    reset_indices(es)
    r.flushdb()
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
