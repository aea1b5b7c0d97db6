"""One round of one syslog contender: start it, send, wait until searchable, meter, stop.

Used by the e2e (as fast as possible; with Elasticsearch paused) and latency (a fixed
rate) scenarios.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from killkrill.bench.contenders import Contender
from killkrill.bench.context import BenchContext
from killkrill.bench.loadgen import Payload, Searchable, SendResult, latencies, send, unique
from killkrill.bench.proctree import TreeMeter, TreeUsage

__all__ = ["Outcome", "Pause", "paused", "run_round"]


@dataclass(frozen=True)
class Pause:
    """Stop Elasticsearch (SIGSTOP) for ``seconds`` once ``after`` messages were sent."""

    after: int
    seconds: float


@dataclass
class Outcome:
    """What one round measured."""

    sent: int
    indexed: int
    distinct: int
    seconds: float
    """From the first byte sent to the moment the last document became searchable."""
    usage: TreeUsage
    es_usage: TreeUsage
    send: SendResult
    latencies: list[float] = field(default_factory=list)
    resumed_at: float | None = None
    """Wall time Elasticsearch was resumed (pause rounds)."""
    done_at: float = 0.0
    exit_codes: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return max(0, self.sent - self.distinct)

    @property
    def duplicates(self) -> int:
        return max(0, self.indexed - self.distinct)

    def per_100k(self, cpu_s: float) -> float:
        return cpu_s / max(self.distinct, 1) * 100_000

    def figures(self) -> dict[str, float]:
        """The e2e figures of this round (``results.json`` keys)."""
        figures = {
            "msgs_per_s": self.distinct / self.seconds if self.seconds > 0 else 0.0,
            "cpu_s_per_100k": self.per_100k(self.usage.cpu_s),
            "peak_rss_mib": self.usage.peak_rss_mib,
            "sent": float(self.sent),
            "indexed": float(self.indexed),
            "delivered": float(self.distinct),
            "lost": float(self.lost),
            "duplicates": float(self.duplicates),
            "seconds": self.seconds,
            "es_cpu_s_per_100k": self.per_100k(self.es_usage.cpu_s),
        }
        if len(self.usage.by_role) > 1:
            for role, cpu in sorted(self.usage.by_role.items()):
                figures[f"cpu_s_per_100k.{role}"] = self.per_100k(cpu)
        if self.resumed_at is not None:
            figures["drain_s"] = max(0.0, self.done_at - self.resumed_at)
        return figures


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` (every thread of it) for the block; SIGCONT whatever happens."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def run_round(
    ctx: BenchContext,
    contender: Contender,
    prefix: str,
    payloads: Sequence[Payload],
    *,
    rate: float | None = None,
    pause: Pause | None = None,
    timeout: float = 600.0,
    stall: float = 30.0,
    poll: float = 0.2,
) -> Outcome:
    """Start ``contender`` on indices ``<prefix>-*``, send ``payloads`` (one connection
    each), wait until every message sent is searchable (or nothing more arrives for
    ``stall`` seconds once sending is over, Elasticsearch runs and the contender holds
    nothing it knows of: :meth:`Contender.held`), then stop it.
    ``_count`` is polled every ``poll`` seconds."""
    total = sum(len(p.ends) for p in payloads)
    ctx.delete_indices(f"{prefix}-*")
    try:
        try:
            contender.start(prefix)
            outcome = _measure(ctx, contender, payloads, total, rate, pause, timeout, stall, poll)
        except BaseException:
            contender.stop()
            raise
        outcome.exit_codes = contender.stop()
        return outcome
    finally:
        ctx.delete_indices(f"{prefix}-*")


def _measure(
    ctx: BenchContext,
    contender: Contender,
    payloads: Sequence[Payload],
    total: int,
    rate: float | None,
    pause: Pause | None,
    timeout: float,
    stall: float,
    poll: float,
) -> Outcome:
    es_pid = ctx.services.elasticsearch_pid()
    pattern = contender.index_pattern
    searchable = Searchable(ctx.es_url, pattern, interval=poll)
    timeline: list[tuple[float, int]] = []
    results: list[SendResult] = []
    sender_done = threading.Event()
    pausing = threading.Event()
    abort = threading.Event()
    """Set when the round ends early (an error, Ctrl-C): the threads stop at once."""
    resumed: list[float] = []

    def sender() -> None:
        try:
            results.append(
                send(
                    contender.ports,
                    payloads,
                    rate=rate,
                    timeout=timeout,
                    timeline=timeline,
                    stop=abort,
                )
            )
        finally:
            sender_done.set()

    def pauser(p: Pause) -> None:
        while not sender_done.is_set() and (timeline[-1][1] if timeline else 0) < p.after:
            if abort.wait(0.01):
                return
        pausing.set()
        try:
            with paused(es_pid):
                ctx.echo(f"  elasticsearch paused for {p.seconds:g}s (SIGSTOP pid {es_pid})")
                abort.wait(p.seconds)
        finally:
            resumed.append(time.time())
            pausing.clear()

    threads = [threading.Thread(target=sender, name="bench-sender", daemon=True)]
    if pause is not None:
        threads.append(threading.Thread(target=pauser, args=(pause,), daemon=True))

    def target() -> int | None:
        return results[0].sent if results else None

    def ready() -> bool:
        return (
            sender_done.is_set()
            and not pausing.is_set()
            and all(not t.is_alive() for t in threads[1:])
            and not contender.held()
        )

    meter = TreeMeter(contender.pids).start()
    es_meter = TreeMeter(lambda: {es_pid: "elasticsearch"}).start()
    started = time.time()
    try:
        for thread in threads:
            thread.start()
        searchable.wait_for(
            target, stall=stall, deadline=time.monotonic() + timeout + stall, ready=ready
        )
    except BaseException:
        abort.set()  # the pauser resumes Elasticsearch, the sender stops
        raise
    finally:
        usage = meter.stop()
        es_usage = es_meter.stop()
        for thread in threads:
            thread.join()
    result = results[0]
    final = searchable.last
    done_at = searchable.first_time_reaching(final) or time.time()
    ctx.refresh(pattern)
    indexed = searchable.count() or final
    distinct = unique(ctx.es_url, pattern, contender.seq_field, total) if indexed else 0
    searchable.close()
    outcome = Outcome(
        sent=result.sent,
        indexed=indexed,
        distinct=distinct,
        seconds=max(done_at - started, 1e-6),
        usage=usage,
        es_usage=es_usage,
        send=result,
        done_at=done_at,
        resumed_at=resumed[0] if resumed else None,
    )
    if rate is not None:
        outcome.latencies = latencies(result, searchable, min(final, result.sent))
    return outcome
