"""Facts -> verdict (pure): each verdict from the condition that makes it, and the order
in which they are looked for."""

from __future__ import annotations

from dataclasses import replace

import pytest

from killkrill.health import (
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
    judge,
)
from killkrill.streams.facts import StreamFacts
from killkrill.streams.heartbeat import Heartbeat

NOW = 1_800_000_000.0
LOGS = StreamFacts("logs-stream", "log-worker", True)
OK_SINKS = [SinkHealth("elasticsearch", "ok", "green"), SinkHealth("postgres", "ok", "ok")]


def worker(kind: str = "log-worker", **fields: object) -> Heartbeat:
    base = Heartbeat(
        kind=kind,
        consumer=f"{kind}-1",
        pipeline="default",
        streams=("logs-stream",),
        sink="elasticsearch",
        started_at=NOW - 600,
        updated_at=NOW - 1,
        last_success_at=NOW - 2,
        last_error_at=None,
        last_error=None,
        delivered=100,
        dead_lettered=0,
        left_pending=0,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def verdict(
    facts: StreamFacts = LOGS,
    workers: list[Heartbeat] | None = None,
    sinks: list[SinkHealth] | None = None,
    thresholds: Thresholds | None = None,
    redis_error: str | None = None,
) -> tuple[str, str]:
    v = judge(
        [(facts, "log-worker")],
        [worker()] if workers is None else workers,
        OK_SINKS if sinks is None else sinks,
        now=NOW,
        thresholds=thresholds or Thresholds(),
        redis_error=redis_error,
    )
    return v.verdict, v.reason


def test_everything_flowing_is_healthy() -> None:
    assert verdict(replace(LOGS, lag=10, pending=5))[0] == HEALTHY


def test_redis_down_is_unknown_never_a_stale_green() -> None:
    v, reason = verdict(redis_error="Connection refused")
    assert v == UNKNOWN and "Connection refused" in reason


def test_a_sink_that_does_not_answer_is_sink_degraded() -> None:
    sinks = [SinkHealth("elasticsearch", "unreachable", "127.0.0.1:9200: ConnectionTimeout")]
    v, reason = verdict(sinks=sinks)
    assert v == SINK_DEGRADED and "ConnectionTimeout" in reason


def test_a_worker_error_newer_than_its_success_is_sink_degraded() -> None:
    w = worker(last_error_at=NOW - 3, last_success_at=NOW - 30, last_error="_bulk timed out")
    v, reason = verdict(workers=[w])
    assert v == SINK_DEGRADED and "_bulk timed out" in reason and "30 s ago" in reason


def test_an_old_error_followed_by_success_is_forgotten() -> None:
    w = worker(last_error_at=NOW - 30, last_success_at=NOW - 2, last_error="blip")
    assert verdict(workers=[w])[0] == HEALTHY


def test_entries_waiting_with_nothing_delivered_are_stalled_with_the_figures() -> None:
    facts = replace(LOGS, lag=1234, oldest_waiting_seconds=95)
    v, reason = verdict(facts, workers=[worker(last_success_at=NOW - 300)])
    assert v == STALLED
    assert "1234 waiting" in reason and "95 s" in reason and "1 live log-worker" in reason


def test_a_backlog_without_workers_is_stalled_not_merely_no_workers() -> None:
    facts = replace(LOGS, lag=500, oldest_waiting_seconds=120)
    v, reason = verdict(facts, workers=[])
    assert v == STALLED and "no live log-worker" in reason


def test_no_worker_and_nothing_waiting_is_no_workers() -> None:
    assert verdict(workers=[])[0] == NO_WORKERS


def test_a_recent_dead_letter_is_dead_lettering_with_the_depth_and_reason() -> None:
    facts = replace(
        LOGS,
        dead_letters=1,
        newest_dead_letter_seconds=4,
        newest_dead_letter_reason="level: unknown level",
    )
    v, reason = verdict(facts)
    assert v == DEAD_LETTERING and "1 dead letter" in reason and "unknown level" in reason


def test_an_old_dead_letter_is_not_news() -> None:
    facts = replace(LOGS, dead_letters=3, newest_dead_letter_seconds=3600)
    assert verdict(facts)[0] == HEALTHY


@pytest.mark.parametrize(
    "facts",
    [replace(LOGS, lag=20_000), replace(LOGS, lag=10, oldest_waiting_seconds=90)],
)
def test_a_large_or_old_backlog_that_is_being_worked_on_is_backlogged(facts: StreamFacts) -> None:
    v, reason = verdict(facts)
    assert v == BACKLOGGED and f"lag {facts.lag}" in reason


def test_no_data_only_when_asked_for() -> None:
    quiet = replace(LOGS, last_entry_seconds=900)
    assert verdict(quiet)[0] == HEALTHY
    v, reason = verdict(quiet, thresholds=Thresholds(no_data_seconds=600))
    assert v == NO_DATA and "15 min" in reason


def test_the_most_actionable_verdict_wins() -> None:
    everything = replace(
        LOGS, lag=50_000, oldest_waiting_seconds=600, dead_letters=2, newest_dead_letter_seconds=1
    )
    broken = [SinkHealth("elasticsearch", "degraded", "cluster health is red")]
    assert verdict(everything, sinks=broken)[0] == SINK_DEGRADED
    assert verdict(everything, workers=[worker(last_success_at=NOW - 900)])[0] == STALLED
    assert verdict(replace(everything, oldest_waiting_seconds=0, lag=50_000))[0] == DEAD_LETTERING
