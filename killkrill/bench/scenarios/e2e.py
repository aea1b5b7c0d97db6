"""e2e: syslog over TCP -> searchable in Elasticsearch, KillKrill vs rsyslog vs syslog-ng.

Every contender gets the same octet-counted RFC 5424 stream (``messages`` of ~400 bytes over
2 TCP connections, as ``loggen --active-connections 2`` sends it) as fast as it reads, into
the same Elasticsearch. Per round and contender:

- ``msgs_per_s``: distinct messages searchable / seconds from the first byte sent to the
  moment the last became searchable (``_count`` polled every 0.2 s);
- ``cpu_s_per_100k``: CPU seconds (``/proc/<pid>/stat`` utime+stime, whole process trees)
  of the contender's own processes in that window per 100,000 messages; KillKrill's include
  its Redis (see :mod:`killkrill.bench.contenders`); Elasticsearch's are apart
  (``es_cpu_s_per_100k``);
- ``peak_rss_mib``: highest summed RSS of those processes (KillKrill: with Redis);
- ``sent``, ``indexed`` (documents), ``delivered`` (distinct MSGIDs indexed), ``lost``
  (sent - delivered), ``duplicates`` (indexed - delivered).

**e2e-pause**: the same, with Elasticsearch stopped (SIGSTOP) for ``pause_s`` seconds once a
third of the messages were sent: what each delivered (the primary figure), lost or
duplicated, and how long it took to catch up once Elasticsearch resumed (``drain_s``).

Rounds alternate contenders (rotated, so each runs first in turn).
"""

from __future__ import annotations

from killkrill.bench.contenders import make_contender
from killkrill.bench.context import BenchContext, rotate
from killkrill.bench.loadgen import syslog_stream
from killkrill.bench.results import Metric, ScenarioResult
from killkrill.bench.syslog_round import Outcome, Pause, run_round

__all__ = ["METRICS", "PAUSE_METRICS", "run"]

METRICS = (
    Metric("msgs_per_s", "msg/s", "messages/s until searchable"),
    Metric("cpu_s_per_100k", "CPU-s/100k", "CPU seconds per 100k (ES excluded)", "lower", 2),
    Metric("peak_rss_mib", "peak RSS", "MiB", "lower", 0),
    Metric("lost", "lost", "messages", "lower"),
    Metric("duplicates", "dup", "documents", "lower"),
    Metric("es_cpu_s_per_100k", "ES CPU-s/100k", "Elasticsearch CPU s per 100k", "lower", 2),
)
PAUSE_METRICS = (
    Metric("delivered", "delivered", "distinct messages searchable"),
    Metric("sent", "sent", "messages", "none"),
    Metric("lost", "lost", "messages", "lower"),
    Metric("duplicates", "dup", "documents", "lower"),
    Metric("drain_s", "drain", "s from resume to all searchable", "lower", 1),
    Metric("peak_rss_mib", "peak RSS", "MiB", "lower", 0),
)
REFERENCE = "rsyslog"
CONNECTIONS = 2


def sizes(quick: bool) -> dict[str, float]:
    if quick:
        return {"messages": 5_000, "pause_messages": 5_000, "pause_s": 3.0, "stall": 10.0}
    return {"messages": 300_000, "pause_messages": 300_000, "pause_s": 30.0, "stall": 30.0}


def _line(ctx: BenchContext, label: str, outcome: Outcome) -> None:
    f = outcome.figures()
    ctx.echo(
        f"  {label}: {f['msgs_per_s']:,.0f} msg/s, {f['cpu_s_per_100k']:.2f} CPU-s/100k, "
        f"peak {f['peak_rss_mib']:.0f} MiB, sent {outcome.sent}, indexed {outcome.indexed}, "
        f"lost {outcome.lost}, dup {outcome.duplicates}"
        + (f", drain {f['drain_s']:.1f}s" if "drain_s" in f else "")
    )


def run(ctx: BenchContext) -> list[ScenarioResult]:
    size = sizes(ctx.quick)
    messages, pause_messages = int(size["messages"]), int(size["pause_messages"])
    names = list(ctx.contenders)
    reference = REFERENCE if REFERENCE in names else names[0]
    e2e = ScenarioResult(
        "e2e",
        "syslog TCP -> searchable in Elasticsearch",
        reference,
        METRICS,
        params={"messages": messages, "message_bytes": 400, "connections": CONNECTIONS},
        notes=[
            "KillKrill's CPU and RSS include its Redis (receiver + log worker + redis-server)",
            "Elasticsearch's CPU is excluded from every contender's figure (ES CPU-s/100k)",
        ],
    )
    pause = ScenarioResult(
        "e2e-pause",
        f"the same with Elasticsearch paused (SIGSTOP) {size['pause_s']:g}s mid-run",
        reference,
        PAUSE_METRICS,
        params={
            "messages": pause_messages,
            "pause_s": size["pause_s"],
            "pause_after_sent": pause_messages // 3,
        },
    )
    payloads = syslog_stream(messages, CONNECTIONS)
    if ctx.warmup:
        with ctx.step("e2e warm-up (not counted)"):
            for name in names:
                warm = syslog_stream(min(messages, 20_000), CONNECTIONS)
                run_round(ctx, make_contender(name, ctx), ctx.index_prefix("warm", name), warm,
                          stall=size["stall"])  # fmt: skip
    for n in range(ctx.rounds):
        for name in rotate(names, n):
            with ctx.step(f"e2e round {n + 1}/{ctx.rounds}: {name}"):
                prefix = ctx.index_prefix("e2e", name, f"r{n}")
                outcome = run_round(
                    ctx, make_contender(name, ctx), prefix, payloads, stall=size["stall"]
                )
                _line(ctx, name, outcome)
                e2e.add(name, outcome.figures())
    payloads = syslog_stream(pause_messages, CONNECTIONS)
    for n in range(ctx.pause_rounds):
        for name in rotate(names, n):
            with ctx.step(f"e2e-pause round {n + 1}/{ctx.pause_rounds}: {name}"):
                prefix = ctx.index_prefix("pause", name, f"r{n}")
                outcome = run_round(
                    ctx,
                    make_contender(name, ctx),
                    prefix,
                    payloads,
                    pause=Pause(pause_messages // 3, size["pause_s"]),
                    stall=size["stall"],
                )
                _line(ctx, name, outcome)
                pause.add(name, outcome.figures())
    return [e2e, pause]
