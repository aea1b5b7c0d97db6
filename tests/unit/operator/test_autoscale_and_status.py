"""The autoscaler's decision and the status derivation (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from killkrill.config.pipeline import AutoscalingSpec
from killkrill.config.status import PipelineStatus
from killkrill.health import PipelineHealth
from killkrill.operator.autoscale import decide
from killkrill.operator.status import Problem, derive, transitions

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SPEC = AutoscalingSpec(enabled=True, min_replicas=1, max_replicas=5, target_lag=100,
                       cooldown_seconds=60)  # fmt: skip


@pytest.mark.parametrize(
    ("current", "lag", "since", "replicas", "changed"),
    [
        (None, 0, None, 1, True),  # first decision: the minimum
        (1, 250, 0, 3, True),  # up at once
        (3, 10_000, 0, 5, True),  # capped at max
        (5, 0, 30, 5, False),  # cooling down
        (5, 0, 61, 1, True),  # down after the cooldown
        (3, 300, 0, 3, False),  # steady
        (3, 150, 120, 2, True),
    ],
)
def test_decide(
    current: int | None, lag: int, since: int | None, replicas: int, changed: bool
) -> None:
    last = None if since is None else NOW - timedelta(seconds=since)
    decision = decide(SPEC, current=current, lag=lag, last_change=last, now=NOW)
    assert (decision.replicas, decision.changed) == (replicas, changed)
    assert f"lag {lag}" in decision.reason


def _deployment(want: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1},
        "spec": {"replicas": want},
        "status": {
            "observedGeneration": 1,
            "readyReplicas": ready,
            "updatedReplicas": want,
            "availableReplicas": ready,
        },
    }


def _health(verdict: str) -> PipelineHealth:
    return PipelineHealth("p", verdict, f"because {verdict}", NOW.timestamp())


def _derive(previous: PipelineStatus, **kw: Any) -> PipelineStatus:
    args: dict[str, Any] = {
        "generation": 2,
        "now": NOW,
        "deployments": {"receiver": _deployment(1, 1), "log-worker": _deployment(2, 2)},
        "problem": None,
        "health": _health("Healthy"),
        "autoscaling": {},
        "log_worker_selector": "a=b",
    }
    args.update(kw)
    return derive(previous, **args)


def _cond(status: PipelineStatus, kind: str) -> tuple[str, str]:
    c = next(c for c in status.conditions if c.type == kind)
    return c.status, c.reason


def test_ready_needs_pods_and_data_and_no_problem() -> None:
    ok = _derive(PipelineStatus())
    assert _cond(ok, "Ready") == ("True", "Ready")
    assert _cond(ok, "DataFlowing") == ("True", "Healthy")
    assert ok.observed_generation == 2 and ok.receivers == "1/1" and ok.workers == "2/2"
    stalled = _derive(PipelineStatus(), health=_health("Stalled"))
    assert _cond(stalled, "Ready") == ("False", "DataNotFlowing")
    assert _cond(stalled, "DataFlowing") == ("False", "Stalled")
    pods = _derive(PipelineStatus(), deployments={"log-worker": _deployment(2, 1)})
    assert _cond(pods, "Ready") == ("False", "PodsNotReady")
    broken = _derive(PipelineStatus(), problem=Problem("SecretMissing", "no Secret x"))
    assert _cond(broken, "Degraded") == ("True", "SecretMissing")
    assert _cond(broken, "Ready") == ("False", "Degraded")
    unknown = _derive(PipelineStatus(), health=_health("Unknown"))
    assert _cond(unknown, "DataFlowing") == ("Unknown", "Unknown")


def test_transition_time_is_kept_while_a_condition_holds() -> None:
    first = _derive(PipelineStatus())
    later = _derive(first, now=NOW + timedelta(minutes=5))
    assert [c.last_transition_time for c in later.conditions] == [
        c.last_transition_time for c in first.conditions
    ]
    assert transitions(first, later) == []
    broken = _derive(first, now=NOW + timedelta(minutes=6), health=_health("SinkDegraded"))
    changed = {c.type for c in transitions(first, broken)}
    assert changed == {"Ready", "DataFlowing"}
    flowing = next(c for c in broken.conditions if c.type == "DataFlowing")
    assert flowing.last_transition_time == "2026-12-02T12:06:00Z"
