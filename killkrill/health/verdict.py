"""From facts to one verdict per pipeline, with a reason a person can act on (pure).

The verdicts, in the order they are looked for (the first that holds is the answer, so
the most actionable one wins):

``Unknown``
    Redis, which holds every other fact, did not answer.
``SinkDegraded``
    A sink does not answer (or Elasticsearch is red), or a worker's last error writing to
    it is newer than its last success and recent (within ``error_window_seconds``).
``Stalled``
    Entries wait (undelivered or pending) for longer than ``stalled_seconds`` and no
    worker of that stream delivered anything in that time - whether workers are missing,
    wedged or failing.
``NoWorkers``
    A stream has no live worker (no heartbeat within its time to live), nothing waiting.
``DeadLettering``
    A dead-letter stream received a letter within ``dead_letter_window_seconds``.
``Backlogged``
    A stream's lag is at least ``lag_entries``, or its oldest undelivered entry is older
    than ``waiting_seconds``: data flows, but behind.
``NoData``
    Nothing was appended to any stream for ``no_data_seconds`` (only with that set: a quiet
    pipeline is normal for many).
``Healthy``
    None of the above.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from killkrill.health.model import (
    BACKLOGGED,
    DEAD_LETTERING,
    HEALTHY,
    NO_DATA,
    NO_WORKERS,
    SINK_DEGRADED,
    STALLED,
    UNKNOWN,
    SinkHealth,
    Thresholds,
)
from killkrill.streams.facts import StreamFacts
from killkrill.streams.heartbeat import Heartbeat

__all__ = ["Verdict", "judge"]


@dataclass(frozen=True)
class Verdict:
    """One verdict and why."""

    verdict: str
    reason: str

    @property
    def healthy(self) -> bool:
        return self.verdict == HEALTHY


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.0f} min"


def judge(
    streams: Sequence[tuple[StreamFacts, str]],
    workers: Sequence[Heartbeat],
    sinks: Sequence[SinkHealth],
    *,
    now: float,
    thresholds: Thresholds,
    redis_error: str | None = None,
) -> Verdict:
    """The verdict of one pipeline. ``streams`` pairs each stream's facts with the kind of
    worker that reads it (``log-worker``, ``metrics-worker``); ``now`` is the Unix time
    the facts were read at (heartbeat times are compared with it)."""
    if redis_error is not None:
        return Verdict(UNKNOWN, f"Redis did not answer, so nothing is known: {redis_error}")
    t = thresholds
    for sink in sinks:
        if sink.state in ("unreachable", "degraded"):
            return Verdict(SINK_DEGRADED, f"{sink.name} {sink.state}: {sink.detail}")
    for w in workers:
        if w.last_error_at is None or now - w.last_error_at > t.error_window_seconds:
            continue
        if w.last_success_at is None or w.last_error_at > w.last_success_at:
            since = (
                "never succeeded"
                if w.last_success_at is None
                else (f"last success {_seconds(now - w.last_success_at)} ago")
            )
            return Verdict(
                SINK_DEGRADED,
                f"{w.kind} {w.consumer} cannot write to {w.sink} ({since}): {w.last_error}",
            )

    def delivered_recently(kind: str) -> bool:
        return any(
            w.last_success_at is not None and now - w.last_success_at <= t.stalled_seconds
            for w in workers
            if w.kind == kind
        )

    for facts, kind in streams:
        waited = max(facts.oldest_waiting_seconds, facts.oldest_pending_seconds)
        waiting = (facts.lag or facts.pending) and waited > t.stalled_seconds
        if waiting and not delivered_recently(kind):
            alive = sum(1 for w in workers if w.kind == kind)
            who = f"{alive} live {kind}(s)" if alive else f"no live {kind}"
            return Verdict(
                STALLED,
                f"{facts.name}: {facts.lag} waiting and {facts.pending} pending entries, "
                f"the oldest for {_seconds(waited)}, and nothing delivered for "
                f"{_seconds(t.stalled_seconds)} ({who})",
            )
    for facts, kind in streams:
        if not any(w.kind == kind for w in workers):
            return Verdict(NO_WORKERS, f"{facts.name}: no live {kind} (no heartbeat)")
    for facts, _ in streams:
        age = facts.newest_dead_letter_seconds
        if age is not None and age <= t.dead_letter_window_seconds:
            return Verdict(
                DEAD_LETTERING,
                f"{facts.name}: {facts.dead_letters} dead letter(s), the newest "
                f"{_seconds(age)} ago: {facts.newest_dead_letter_reason or 'no reason given'}",
            )
    for facts, _ in streams:
        if facts.lag >= t.lag_entries or facts.oldest_waiting_seconds > t.waiting_seconds:
            return Verdict(
                BACKLOGGED,
                f"{facts.name}: lag {facts.lag} entries, the oldest waiting "
                f"{_seconds(facts.oldest_waiting_seconds)} (thresholds: {t.lag_entries} "
                f"entries, {_seconds(t.waiting_seconds)})",
            )
    if t.no_data_seconds is not None:
        ages = [f.last_entry_seconds for f, _ in streams if f.last_entry_seconds is not None]
        newest = min(ages) if ages else None
        if newest is None or newest > t.no_data_seconds:
            when = "ever" if newest is None else f"for {_seconds(newest)}"
            return Verdict(NO_DATA, f"nothing received {when}")
    total = sum(f.lag + f.pending for f, _ in streams)
    return Verdict(HEALTHY, f"data flows: {total} entries in flight, {len(workers)} worker(s)")
