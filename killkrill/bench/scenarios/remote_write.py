"""metrics, remote-write part: a real Prometheus remote_writing into KillKrill vs into nothing.

Prometheus (Debian's 2.42, ``bench/peers/prometheus.yml``, default ``queue_config``) scrapes
a synthetic exporter of ``series`` gauges every ``scrape_interval`` (the offered load is
series / interval samples/s) and remote_writes everything to one receiver:

- **killkrill**: ``killkrill receiver http`` (``/api/v1/write``, no auth) and one
  ``killkrill worker metrics`` aggregating into PostgreSQL;
- **null**: nginx answering 204 to every request (``bench/peers/nginx-null.conf``): what
  Prometheus can send on this machine when the receiver costs nothing.

Per round (Prometheus started fresh, after a few scrapes of warm-up) over ``window``
seconds, from Prometheus's own counters: ``samples_per_s`` delivered (2xx), the offered
``in_per_s``, ``failed``/``retried`` samples and what was still ``pending`` at the end, and
``lag_s`` (the newest sample scraped minus the newest one sent). CPU per 100k delivered
samples of the receiver side (KillKrill: receiver + metrics worker + Redis; PostgreSQL is
reported apart as for Elasticsearch). Then Prometheus is killed, KillKrill's worker drains
what was delivered, and ``aggregated`` (``sum(count)`` of the aggregates) is compared with
what Prometheus saw acknowledged in total: ``lost`` (answers Prometheus had no time to read
before it was killed can only make ``aggregated`` larger, never smaller).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO

import httpx
import psycopg2

from killkrill.bench.context import KILLKRILL, BenchContext, rotate, stop_process
from killkrill.bench.peers import ensure_tools, render
from killkrill.bench.proctree import TreeMeter
from killkrill.bench.results import Metric, ScenarioResult
from killkrill.bench.scenarios.metrics import postgres_pid, truncate
from killkrill.db.migrate import upgrade
from killkrill.dev.process import free_port
from killkrill.errors import KillKrillError

__all__ = ["SyntheticExporter", "parse_exposition", "run"]

METRICS = (
    Metric("samples_per_s", "samples/s", "delivered (2xx) per second"),
    Metric("in_per_s", "offered/s", "samples scraped per second", "none"),
    Metric("pending", "pending", "samples queued at the end", "lower"),
    Metric("lag_s", "lag", "s behind the newest scraped sample", "lower", 1),
    Metric("cpu_s_per_100k", "CPU-s/100k", "receiver side, per delivered", "lower", 2),
    Metric("lost", "lost", "delivered but not aggregated", "lower"),
)
PER_NAME = 1_000
"""Series per metric name (KillKrill caps a name at 10,000 series by default)."""


class SyntheticExporter:
    """``series`` gauges on ``/metrics`` (``bench_rw_<k>{instance="i<j>"}``), new values at
    every scrape; served from a thread of this process."""

    def __init__(self, series: int) -> None:
        self.series = series
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def render(self) -> bytes:
        self.scrapes += 1
        tick = self.scrapes
        lines: list[str] = []
        for name in range((self.series + PER_NAME - 1) // PER_NAME):
            lines.append(f"# TYPE bench_rw_{name} gauge")
            first = name * PER_NAME
            for j in range(first, min(first + PER_NAME, self.series)):
                lines.append(f'bench_rw_{name}{{instance="i{j}"}} {(j + tick) % 1000}')
        return ("\n".join(lines) + "\n").encode()

    def __enter__(self) -> SyntheticExporter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_exposition(text: str) -> dict[str, float]:
    """Prometheus text exposition -> metric name -> sum of its values over label sets."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        out[match.group(1)] = out.get(match.group(1), 0.0) + value
    return out


@dataclass
class Counters:
    at: float
    sent: float
    samples_in: float
    failed: float
    retried: float
    pending: float
    lag: float | None


def _counters(url: str) -> Counters:
    values = parse_exposition(httpx.get(f"{url}/metrics", timeout=10).text)
    newest = values.get("prometheus_remote_storage_highest_timestamp_in_seconds")
    sent = values.get("prometheus_remote_storage_queue_highest_sent_timestamp_seconds")
    return Counters(
        at=time.monotonic(),
        sent=values.get("prometheus_remote_storage_samples_total", 0.0),
        samples_in=values.get("prometheus_remote_storage_samples_in_total", 0.0),
        failed=values.get("prometheus_remote_storage_samples_failed_total", 0.0),
        retried=values.get("prometheus_remote_storage_samples_retried_total", 0.0),
        pending=values.get("prometheus_remote_storage_samples_pending", 0.0),
        lag=(newest - sent) if newest is not None and sent is not None else None,
    )


@contextmanager
def _prometheus(
    ctx: BenchContext, exporter: SyntheticExporter, remote: str, interval: float, label: str
) -> Iterator[str]:
    binary = ensure_tools("prometheus")["prometheus"]
    work = ctx.workdir / f"prometheus-{label}-{time.monotonic_ns()}"
    work.mkdir(parents=True)
    port = free_port()
    conf = render(
        "prometheus.yml",
        work / "prometheus.yml",
        scrape_interval=f"{interval:g}s",
        scrape_timeout=f"{interval:g}s",
        exporter_port=exporter.port,
        remote_url=remote,
    )
    log = ctx.log(f"prometheus-{label}").open("ab")
    argv = [binary, f"--config.file={conf}", f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/-/ready", proc, "prometheus")
        yield url
    finally:
        # Killed, not stopped: on SIGTERM it waits up to a minute to flush its queue to a
        # receiver that may be behind; what was delivered was counted before this.
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        log.close()


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise KillKrillError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code in (200, 204):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise KillKrillError(f"{what} did not answer {url} within 90s")


class _Receiver:
    """The receiving side of one round: KillKrill's processes or nginx."""

    def __init__(self, ctx: BenchContext, kind: str) -> None:
        self.ctx, self.kind = ctx, kind
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[IO[bytes]] = []
        self.port = free_port()

    @property
    def url(self) -> str:
        path = "/api/v1/write" if self.kind == "killkrill" else "/write"
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        if self.kind == "killkrill":
            self._start_killkrill()
        else:
            self._start_nginx()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = self.ctx.log(f"remote-write-{name}").open("ab")
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def _start_killkrill(self) -> None:
        self.ctx.flush_redis()
        truncate(self.ctx.services.database_url)
        env = {
            **os.environ,
            "REDIS_URL": self.ctx.redis_url,
            "DATABASE_URL": self.ctx.services.database_url,
            "KILLKRILL_LOG_LEVEL": "warning",
        }
        ops_r, ops_w = free_port(), free_port()
        receiver = [*KILLKRILL, "receiver", "http", "--no-auth", "--host", "127.0.0.1"]
        self._spawn(
            "receiver", [*receiver, "--port", str(self.port), "--ops-port", str(ops_r)], env
        )
        self._spawn("worker", [*KILLKRILL, "worker", "metrics", "--ops-port", str(ops_w)], env)
        _wait_http(f"http://127.0.0.1:{ops_r}/healthz", self.procs["receiver"], "receiver")
        _wait_http(f"http://127.0.0.1:{ops_w}/healthz", self.procs["worker"], "metrics worker")

    def _start_nginx(self) -> None:
        binary = ensure_tools("nginx")["nginx"]
        work = self.ctx.workdir / f"nginx-{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        conf = render("nginx-null.conf", work / "nginx.conf", workdir=work, port=self.port)
        self._spawn("nginx", [binary, "-c", str(conf), "-p", str(work), "-e", str(work / "e.log")])
        _wait_http(f"http://127.0.0.1:{self.port}/", self.procs["nginx"], "nginx")

    def pids(self) -> dict[int, str]:
        roles = {proc.pid: name for name, proc in self.procs.items()}
        if self.kind == "killkrill":
            roles[self.ctx.services.redis_pid()] = "redis"
        return roles

    def drain_and_count(self, timeout: float) -> tuple[int, int]:
        """KillKrill: wait until the worker has taken everything off the stream; the
        samples aggregated and the dead letters."""
        client = self.ctx.redis()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and int(client.xlen("metrics-stream")) > 0:
                time.sleep(0.2)
            letters = int(client.xlen("metrics-stream:dead-letter"))
        finally:
            client.close()
        time.sleep(1.0)  # the batch in flight commits
        conn = psycopg2.connect(self.ctx.services.database_url)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT coalesce(sum(count), 0) FROM aggregated_metrics")
                row = cur.fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else 0, letters

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            stop_process(proc)
        for log in self.logs:
            log.close()


def sizes(quick: bool) -> dict[str, float]:
    if quick:
        return {"series": 1_000, "interval": 1.0, "warmup_s": 3.0, "window_s": 6.0}
    return {"series": 20_000, "interval": 1.0, "warmup_s": 10.0, "window_s": 60.0}


def run(ctx: BenchContext) -> list[ScenarioResult]:
    size = sizes(ctx.quick)
    series, interval = int(size["series"]), size["interval"]
    upgrade(ctx.services.database_url)
    pg_pid = postgres_pid(ctx.services.database_url)
    result = ScenarioResult(
        "remote-write",
        f"Prometheus remote_write, {series:,} series every {interval:g}s",
        "null",
        METRICS,
        params={
            "series": series,
            "scrape_interval_s": interval,
            "window_s": size["window_s"],
            "offered_per_s": series / interval,
        },
        notes=[
            "null = nginx answering 204; killkrill = receiver + metrics worker + Redis",
            "PostgreSQL's CPU is apart (pg_cpu_s_per_100k in results.json)",
        ],
    )
    with SyntheticExporter(series) as exporter:
        for n in range(ctx.pause_rounds):
            for kind in rotate(["killkrill", "null"], n):
                with ctx.step(f"remote-write round {n + 1}/{ctx.pause_rounds}: {kind}"):
                    figures = _round(ctx, exporter, kind, size, pg_pid)
                    ctx.echo(
                        f"  {kind}: {figures['samples_per_s']:,.0f} samples/s delivered of "
                        f"{figures['in_per_s']:,.0f}/s offered, pending {figures['pending']:,.0f}"
                        + (f", lost {figures['lost']:.0f}" if "lost" in figures else "")
                    )
                    result.add(kind, figures)
    return [result]


def _round(
    ctx: BenchContext, exporter: SyntheticExporter, kind: str, size: dict[str, float], pg: int
) -> dict[str, float]:
    receiver = _Receiver(ctx, kind)
    receiver.start()
    try:
        with _prometheus(ctx, exporter, receiver.url, size["interval"], kind) as prom:
            time.sleep(size["warmup_s"])
            meter = TreeMeter(lambda: {**receiver.pids(), pg: "postgres"}).start()
            first = _counters(prom)
            time.sleep(size["window_s"])
            last = _counters(prom)
            usage = meter.stop()
            final = _counters(prom)  # just before Prometheus is killed
        seconds = last.at - first.at
        delivered = last.sent - first.sent
        own = sum(cpu for role, cpu in usage.by_role.items() if role != "postgres")
        figures = {
            "samples_per_s": delivered / seconds,
            "in_per_s": (last.samples_in - first.samples_in) / seconds,
            "failed": last.failed - first.failed,
            "retried": last.retried - first.retried,
            "pending": last.pending,
            "cpu_s_per_100k": own / max(delivered, 1) * 100_000,
            "pg_cpu_s_per_100k": usage.by_role.get("postgres", 0.0) / max(delivered, 1) * 1e5,
            "delivered_total": final.sent,
        }
        if last.lag is not None:
            figures["lag_s"] = max(0.0, last.lag)
        if kind == "killkrill":
            aggregated, letters = receiver.drain_and_count(timeout=120)
            figures["aggregated"] = float(aggregated)
            figures["dead_letters"] = float(letters)
            # Requests answered between the last read and the kill are aggregated but not
            # counted by Prometheus: `aggregated` may exceed what it saw acknowledged, never
            # fall short of it unless samples were lost.
            figures["lost"] = max(0.0, final.sent - aggregated)
        return figures
    finally:
        receiver.stop()
