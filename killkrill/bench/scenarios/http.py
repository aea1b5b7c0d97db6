"""http: log records/s into Redis through the HTTP receiver vs what Redis itself takes.

One ``killkrill receiver http`` process (no auth, defaults but for ports and the backlog
limit, raised so a run is never answered 429), loaded by ``wrk`` (a second process, C)
posting the same body again and again: batches of 1, 100 and 1000 records per request
(``-c 32`` for single records, ``-c 8`` for batches, one wrk thread). Records/s count what
is in Redis (``XLEN`` after the run, checked against wrk's count of 2xx answers).

The reference, measured in the same run against the same Redis: ``redis-benchmark`` doing
``XADD`` of the very payload the receiver stored (read back from the stream), with the same
number of connections and ``-P <batch>`` (as many records per round trip as a request
carries). CPU per 100k records: the receiver process plus Redis (KillKrill), Redis alone
(reference).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis

from killkrill.bench.context import KILLKRILL, BenchContext, stop_process
from killkrill.bench.peers import ensure_tools, repo_root
from killkrill.bench.proctree import TreeMeter
from killkrill.bench.results import Metric, ScenarioResult
from killkrill.dev.process import free_port
from killkrill.errors import KillKrillError

__all__ = ["BATCHES", "records", "run", "run_wrk"]

BATCHES = ((1, 32), (100, 8), (1000, 8))
"""(records per request, connections)."""
STREAM = "logs-stream"
REF_KEY = "bench-http-reference"

METRICS = (
    Metric("records_per_s", "records/s", "records in Redis per second"),
    Metric("requests_per_s", "req/s", "requests (or pipelines) per second"),
    Metric("cpu_s_per_100k", "CPU-s/100k", "receiver + Redis (reference: Redis)", "lower", 2),
)


def records(n: int) -> list[dict[str, object]]:
    return [
        {
            "timestamp": f"2024-01-06T12:00:{i % 60:02d}Z",
            "service": f"service-{i % 10}",
            "level": ["info", "warn", "error"][i % 3],
            "message": f"Log message {i}: GET /api/v1/users/{i} answered 200 in 12 ms",
            "request_id": f"req-{i:08d}",
        }
        for i in range(n)
    ]


def run_wrk(url: str, body: Path, seconds: float, connections: int) -> tuple[float, int]:
    """``wrk`` posting ``body`` to ``url`` for ``seconds``: (requests/s, requests done)."""
    script = repo_root() / "bench" / "receivers" / "post.lua"
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", str(script), url],
        env={"BODY_FILE": str(body), "BODY_PATH": "/api/v1/logs", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise KillKrillError(f"wrk saw answers other than 2xx:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    if rps is None or done is None:
        raise KillKrillError(f"cannot read wrk's output:\n{out}")
    return float(rps.group(1)), int(done.group(1))


def _redis_benchmark(
    ctx: BenchContext, payload: bytes, batch: int, connections: int, requests: int
) -> tuple[float, float]:
    """XADD ``payload`` ``requests`` times; (commands/s, seconds)."""
    host_port = ctx.services.redis_url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    argv = ["redis-benchmark", "-h", host, "-p", port, "--dbnum", str(ctx.REDIS_DB),
            "-c", str(connections), "-P", str(batch), "-n", str(requests), "-q",
            "XADD", REF_KEY, "*", "data", payload.decode(), "v", "1"]  # fmt: skip
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    elapsed = time.monotonic() - started
    found = re.findall(r"([\d.]+) requests per second", out)
    if not found:
        raise KillKrillError(f"cannot read redis-benchmark's output:\n{out}")
    return float(found[-1]), elapsed


def run(ctx: BenchContext) -> list[ScenarioResult]:
    ensure_tools("wrk", "redis-benchmark")
    seconds = 2.0 if ctx.quick else 10.0
    port, ops = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_URL": ctx.redis_url,
        "KILLKRILL_BACKPRESSURE__MAX_BACKLOG": "1000000000",
        "KILLKRILL_LOG_LEVEL": "warning",
    }
    ctx.flush_redis()
    log = ctx.log("http-receiver").open("ab")
    argv = [*KILLKRILL, "receiver", "http", "--no-auth", "--host", "127.0.0.1",
            "--port", str(port), "--ops-port", str(ops)]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    results: list[ScenarioResult] = []
    try:
        _wait_healthy(f"http://127.0.0.1:{ops}/healthz", proc)
        redis_pid = ctx.services.redis_pid()
        client = ctx.redis()
        for batch, connections in BATCHES:
            result = ScenarioResult(
                f"http-{batch}",
                f"HTTP receiver, {batch} record(s) per request, wrk -c{connections}",
                "redis-benchmark",
                METRICS,
                params={"batch": batch, "connections": connections, "seconds": seconds},
                notes=["backlog limit raised to 1e9 so no request is answered 429"],
            )
            body = ctx.workdir / f"http-{batch}.json"
            batch_records = records(batch)
            body.write_bytes(orjson.dumps(batch_records if batch > 1 else batch_records[0]))
            for n in range(ctx.total_rounds):
                client.flushdb()
                meter = TreeMeter(lambda: {proc.pid: "receiver", redis_pid: "redis"}).start()
                rps, done = run_wrk(f"http://127.0.0.1:{port}/", body, seconds, connections)
                usage = meter.stop()
                stored = int(client.xlen(STREAM))
                if stored < done * batch:
                    raise KillKrillError(f"{stored} records in Redis, wrk got {done * batch} 2xx")
                mine = {
                    "records_per_s": stored / (done / rps),  # wrk's own clock
                    "requests_per_s": rps,
                    "cpu_s_per_100k": usage.cpu_s / max(stored, 1) * 100_000,
                }
                payload = _first_payload(client)
                client.flushdb()
                requests = max(int(stored), 1000)
                meter = TreeMeter(lambda: {redis_pid: "redis"}).start()
                cps, elapsed = _redis_benchmark(ctx, payload, batch, connections, requests)
                usage = meter.stop()
                added = int(client.xlen(REF_KEY))
                reference = {
                    "records_per_s": cps,
                    "requests_per_s": cps / batch,
                    "cpu_s_per_100k": usage.cpu_s / max(added, 1) * 100_000,
                }
                client.delete(REF_KEY)
                label = ctx.round_label(f"http-{batch}", n)
                ctx.echo(
                    f"  {label}: receiver {mine['records_per_s']:,.0f} records/s "
                    f"({rps:,.0f} req/s) | redis-benchmark XADD -P{batch} {cps:,.0f}/s "
                    f"({elapsed:.1f}s)"
                )
                if ctx.counted(n):
                    result.add("killkrill", mine)
                    result.add("redis-benchmark", reference)
            results.append(result)
        client.close()
    finally:
        stop_process(proc)
        log.close()
        ctx.flush_redis()
    return results


def _first_payload(client: redis.Redis) -> bytes:
    """The data of the stream's first entry: a record as the receiver stored it."""
    entries: Any = client.xrange(STREAM, count=1)
    data = entries[0][1][b"data"]
    assert isinstance(data, bytes)
    return data


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise KillKrillError(f"the HTTP receiver exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise KillKrillError("the HTTP receiver did not answer /healthz within 60s")
