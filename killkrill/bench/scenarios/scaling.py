"""scaling: more processes on one stream.

- **scaling-workers**: 1, 2 and 4 ``killkrill worker logs`` processes (one consumer group)
  drain the same ``logs`` records (~500 bytes, the log-worker scenario's) from one stream
  into Elasticsearch. The workers are started and answer ``/healthz``, then stopped
  (SIGSTOP) while the stream is filled, then resumed: the clock and the CPU meter run from
  the resume to the moment the stream is empty (a worker deletes what it acknowledged), so
  process start-up is not counted. Every record is checked to be indexed.
- **scaling-receivers**: 1 and 2 ``killkrill receiver syslog`` processes take the e2e
  scenario's octet-counted stream over 4 TCP connections until every message is in Redis.
  The receiver does not set ``SO_REUSEPORT`` (asyncio's ``create_server`` and uvicorn
  without it), so two receivers cannot listen on one port: each has its own and the
  sender splits its connections between them, as a Kubernetes Service spreads connections
  over pods.

CPU per 100k: the KillKrill processes plus Redis.
"""

from __future__ import annotations

import os
import signal
import time

from killkrill.bench.context import KILLKRILL, BenchContext, stop_process
from killkrill.bench.loadgen import send, syslog_stream
from killkrill.bench.proctree import TreeMeter
from killkrill.bench.results import Metric, ScenarioResult
from killkrill.bench.scenarios.log_worker import STREAM, fill_stream, record
from killkrill.dev.pipeline import Component
from killkrill.dev.process import free_port
from killkrill.errors import KillKrillError

__all__ = ["RECEIVERS", "WORKERS", "run"]

WORKERS = (1, 2, 4)
RECEIVERS = (1, 2)
CONNECTIONS = 4

WORKER_METRICS = (
    Metric("docs_per_s", "docs/s", "documents indexed per second"),
    Metric("cpu_s_per_100k", "CPU-s/100k", "workers + Redis", "lower", 2),
    Metric("peak_rss_mib", "peak RSS", "MiB, workers + Redis", "lower", 0),
)
RECEIVER_METRICS = (
    Metric("msgs_per_s", "msg/s", "messages into Redis per second"),
    Metric("cpu_s_per_100k", "CPU-s/100k", "receivers + Redis", "lower", 2),
    Metric("peak_rss_mib", "peak RSS", "MiB, receivers + Redis", "lower", 0),
)


def _env(ctx: BenchContext, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": ctx.redis_url,
        "ELASTICSEARCH_URL": ctx.es_url,
        "KILLKRILL_ELASTICSEARCH__INDEX_PREFIX": prefix,
        "KILLKRILL_NUMBER_OF_REPLICAS": "0",
        "KILLKRILL_BACKPRESSURE__MAX_BACKLOG": "1000000000",
        "KILLKRILL_LOG_LEVEL": "warning",
    }


def _start(ctx: BenchContext, components: list[Component]) -> None:
    for component in components:
        component.launch()
    deadline = time.monotonic() + 90
    waiting = list(components)
    while waiting:
        for component in list(waiting):
            assert component.proc is not None
            if component.proc.poll() is not None:
                raise KillKrillError(f"{component.name} exited with {component.proc.returncode}")
            if component.healthy():
                waiting.remove(component)
        if waiting and time.monotonic() > deadline:
            raise KillKrillError(f"{waiting[0].name} not healthy within 90s")
        time.sleep(0.1)


def _stop(components: list[Component]) -> None:
    for component in components:
        if component.proc is not None and component.proc.poll() is None:
            component.proc.terminate()
    for component in components:
        if component.proc is not None:
            stop_process(component.proc)


def _workers_round(
    ctx: BenchContext, count: int, payloads: list[bytes], n: int
) -> dict[str, float]:
    prefix = ctx.index_prefix("scale", f"w{count}", f"r{n}")
    ctx.delete_indices(f"{prefix}-*")
    ctx.flush_redis()
    env = _env(ctx, prefix)
    logs = [ctx.log(f"scaling-w{count}-{i}").open("ab") for i in range(count)]
    components = []
    for i in range(count):
        port = free_port()
        argv = [*KILLKRILL, "worker", "logs", "--ops-port", str(port)]
        components.append(Component(f"worker-{i}", argv, port, env, logs[i]))
    client = ctx.redis()
    try:
        _start(ctx, components)
        pids = [c.proc.pid for c in components if c.proc is not None]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            fill_stream(client, payloads)
        finally:
            roles = {pid: "worker" for pid in pids}
            roles[ctx.services.redis_pid()] = "redis"
            meter = TreeMeter(lambda: roles).start()
            started = time.monotonic()
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        deadline = started + 600
        while int(client.xlen(STREAM)) > 0:
            if time.monotonic() > deadline:
                raise KillKrillError(f"{count} workers did not drain the stream in 600s")
            time.sleep(0.02)
        seconds = time.monotonic() - started
        usage = meter.stop()
        ctx.refresh(f"{prefix}-*")
        indexed = int(ctx.es.get(f"/{prefix}-*/_count").json()["count"])
        if indexed != len(payloads):
            raise KillKrillError(f"{count} workers indexed {indexed} of {len(payloads)}")
    finally:
        _stop(components)
        for log in logs:
            log.close()
        client.close()
        ctx.delete_indices(f"{prefix}-*")
        ctx.flush_redis()
    return {
        "docs_per_s": len(payloads) / seconds,
        "cpu_s_per_100k": usage.cpu_s / len(payloads) * 100_000,
        "peak_rss_mib": usage.peak_rss_mib,
        "cpu_s_per_100k.worker": usage.by_role.get("worker", 0.0) / len(payloads) * 100_000,
        "cpu_s_per_100k.redis": usage.by_role.get("redis", 0.0) / len(payloads) * 100_000,
    }


def _receivers_round(ctx: BenchContext, count: int, messages: int) -> dict[str, float]:
    ctx.flush_redis()
    env = _env(ctx, ctx.index_prefix("unused"))
    ports = [free_port() for _ in range(count)]
    logs = [ctx.log(f"scaling-r{count}-{i}").open("ab") for i in range(count)]
    components = []
    for i, port in enumerate(ports):
        ops = free_port()
        argv = [*KILLKRILL, "receiver", "syslog", "--host", "127.0.0.1", "--port", str(port),
                "--no-udp", "--ops-port", str(ops)]  # fmt: skip
        components.append(Component(f"receiver-{i}", argv, ops, env, logs[i]))
    payloads = syslog_stream(messages, CONNECTIONS)
    client = ctx.redis()
    try:
        _start(ctx, components)
        roles = {c.proc.pid: "receiver" for c in components if c.proc is not None}
        roles[ctx.services.redis_pid()] = "redis"
        meter = TreeMeter(lambda: roles).start()
        started = time.monotonic()
        sent = send(ports, payloads, timeout=600)
        while int(client.xlen("logs-stream")) < sent.sent:
            if time.monotonic() - started > 600:
                raise KillKrillError(f"{count} receivers: not all messages in Redis in 600s")
            time.sleep(0.01)
        seconds = time.monotonic() - started
        usage = meter.stop()
    finally:
        _stop(components)
        for log in logs:
            log.close()
        client.close()
        ctx.flush_redis()
    return {
        "msgs_per_s": sent.sent / seconds,
        "cpu_s_per_100k": usage.cpu_s / max(sent.sent, 1) * 100_000,
        "peak_rss_mib": usage.peak_rss_mib,
        "sent": float(sent.sent),
    }


def run(ctx: BenchContext) -> list[ScenarioResult]:
    logs = 10_000 if ctx.quick else 200_000
    messages = 10_000 if ctx.quick else 300_000
    workers = ScenarioResult(
        "scaling-workers",
        "log worker processes on one stream",
        "1 worker",
        WORKER_METRICS,
        params={"logs": logs, "record_bytes": 500, "workers": list(WORKERS)},
        notes=[f"machine: {os.cpu_count()} CPUs shared with Elasticsearch and Redis"],
    )
    receivers = ScenarioResult(
        "scaling-receivers",
        "syslog receiver processes into Redis",
        "1 receiver",
        RECEIVER_METRICS,
        params={"messages": messages, "connections": CONNECTIONS, "receivers": list(RECEIVERS)},
        notes=[
            "no SO_REUSEPORT in the receiver: each process has its own port, the sender "
            "splits its connections between them"
        ],
    )
    payloads = [record(i) for i in range(logs)]
    for n in range(ctx.total_rounds):
        for count in WORKERS if n % 2 == 0 else reversed(WORKERS):
            figures = _workers_round(ctx, count, payloads, n)
            ctx.echo(
                f"  {ctx.round_label('scaling-workers', n)}: {count} worker(s) "
                f"{figures['docs_per_s']:,.0f} docs/s, {figures['cpu_s_per_100k']:.2f} CPU-s/100k"
            )
            if ctx.counted(n):
                workers.add(f"{count} worker{'s' if count > 1 else ''}", figures)
        for count in RECEIVERS if n % 2 == 0 else reversed(RECEIVERS):
            figures = _receivers_round(ctx, count, messages)
            ctx.echo(
                f"  {ctx.round_label('scaling-receivers', n)}: {count} receiver(s) "
                f"{figures['msgs_per_s']:,.0f} msg/s, {figures['cpu_s_per_100k']:.2f} CPU-s/100k"
            )
            if ctx.counted(n):
                receivers.add(f"{count} receiver{'s' if count > 1 else ''}", figures)
    for result in (workers, receivers):  # the table in 1, 2, 4 order whatever ran first
        result.contenders = dict(sorted(result.contenders.items()))
    return [workers, receivers]
