"""latency: receive -> searchable at a fixed offered load, KillKrill vs rsyslog vs syslog-ng.

The offered load is the same for every contender: half the lowest e2e maximum of this run
(the median ``msgs_per_s`` of the slowest contender; when e2e did not run, one short
max-speed round of each contender measures it first). Each round sends ``seconds`` of
messages at that rate (2 TCP connections, paced) and polls ``_count`` every 50 ms.

The latency of the k-th message is the first time a search saw k documents minus the time
the k-th message was handed to the kernel: exact when messages become searchable in the
order sent (each contender keeps a connection's order and batches in order), within the
poll interval. It includes Elasticsearch's refresh (every 1 s, the same for all).
"""

from __future__ import annotations

import statistics

from killkrill.bench.contenders import make_contender
from killkrill.bench.context import BenchContext, rotate
from killkrill.bench.loadgen import syslog_stream
from killkrill.bench.results import Metric, ScenarioResult
from killkrill.bench.syslog_round import run_round

__all__ = ["percentile", "run"]

METRICS = (
    Metric("p50_ms", "p50", "ms from sent to searchable", "lower"),
    Metric("p99_ms", "p99", "ms", "lower"),
    Metric("max_ms", "max", "ms", "lower"),
    Metric("rate", "offered", "messages/s sent", "none"),
    Metric("lost", "lost", "messages", "lower"),
)
REFERENCE = "rsyslog"
CONNECTIONS = 2


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _max_rate(ctx: BenchContext) -> tuple[float, str]:
    """The lowest e2e maximum among the contenders, and where it comes from."""
    e2e = ctx.done.get("e2e")
    if e2e is not None:
        medians = [m for name in ctx.contenders if (m := e2e.median(name, "msgs_per_s"))]
        if medians:
            return min(medians), "e2e of this run"
    messages = 5_000 if ctx.quick else 100_000
    payloads = syslog_stream(messages, CONNECTIONS)
    rates = []
    for name in ctx.contenders:
        with ctx.step(f"latency calibration (max speed, not counted): {name}"):
            outcome = run_round(
                ctx, make_contender(name, ctx), ctx.index_prefix("cal", name), payloads, stall=10
            )
            rates.append(outcome.figures()["msgs_per_s"])
    return min(rates), "a max-speed round of each contender"


def run(ctx: BenchContext) -> list[ScenarioResult]:
    seconds = 3.0 if ctx.quick else 30.0
    top, source = _max_rate(ctx)
    rate = max(100.0, top / 2)
    messages = int(rate * seconds)
    names = list(ctx.contenders)
    result = ScenarioResult(
        "latency",
        f"sent -> searchable at {rate:,.0f} msg/s (half the lowest maximum)",
        REFERENCE if REFERENCE in names else names[0],
        METRICS,
        params={
            "rate": rate,
            "max_from": source,
            "max": top,
            "seconds": seconds,
            "messages": messages,
            "connections": CONNECTIONS,
            "poll_s": 0.05,
        },
        notes=["includes Elasticsearch's 1 s refresh interval, the same for every contender"],
    )
    payloads = syslog_stream(messages, CONNECTIONS)
    for n in range(ctx.pause_rounds):
        for name in rotate(names, n):
            with ctx.step(f"latency round {n + 1}/{ctx.pause_rounds}: {name}"):
                outcome = run_round(
                    ctx,
                    make_contender(name, ctx),
                    ctx.index_prefix("lat", name, f"r{n}"),
                    payloads,
                    rate=rate,
                    stall=10 if ctx.quick else 30,
                    poll=0.05,
                )
                lat = [x * 1000 for x in outcome.latencies]
                figures = {
                    "p50_ms": percentile(lat, 50),
                    "p99_ms": percentile(lat, 99),
                    "max_ms": max(lat, default=0.0),
                    "mean_ms": statistics.fmean(lat) if lat else 0.0,
                    "rate": outcome.sent / max(outcome.send.seconds, 1e-6),
                    "sent": float(outcome.sent),
                    "indexed": float(outcome.indexed),
                    "lost": float(outcome.lost),
                    "cpu_s_per_100k": outcome.figures()["cpu_s_per_100k"],
                }
                ctx.echo(
                    f"  {name}: p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, "
                    f"max {figures['max_ms']:.0f} ms at {figures['rate']:,.0f} msg/s, "
                    f"lost {outcome.lost}"
                )
                result.add(name, figures)
    return [result]
