"""The Pipeline's status, derived last, from what was observed (pure).

Conditions (``metav1.Condition``, ``lastTransitionTime`` kept while a condition's status
does not change):

* ``Degraded`` - the operator cannot do its job: a referenced Secret or key is missing,
  the spec is invalid, an object was refused by the API, Redis does not answer. The
  reason says which and the message what to fix.
* ``Progressing`` - a Deployment is rolling out (updated or available replicas behind).
* ``DataFlowing`` - the data plane's verdict (:mod:`killkrill.health`): True only when
  ``Healthy``; ``Unknown`` when it could not be read.
* ``Ready`` - pods ready *and* data flowing *and* not degraded: pods being ready is
  necessary, never sufficient.

:func:`derive` builds the whole status; :func:`transitions` says which conditions changed,
for Events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from killkrill.config.status import (
    AutoscalingStatus,
    ComponentStatus,
    Condition,
    HealthStatus,
    PipelineStatus,
    StreamStatus,
)
from killkrill.health import HEALTHY, UNKNOWN, PipelineHealth
from killkrill.operator.render import LOG_WORKER, METRICS_WORKER, RECEIVER

__all__ = ["Problem", "components", "derive", "rfc3339", "transitions"]

_STATUS_KEYS = {RECEIVER: "receiver", LOG_WORKER: "logWorker", METRICS_WORKER: "metricsWorker"}


@dataclass(frozen=True)
class Problem:
    """Why the operator is degraded: a CamelCase reason and what to do."""

    reason: str
    message: str


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def components(deployments: Mapping[str, Mapping[str, Any] | None]) -> dict[str, ComponentStatus]:
    """Replica counts of each component's Deployment (absent: all zero)."""
    out: dict[str, ComponentStatus] = {}
    for component, key in _STATUS_KEYS.items():
        if component not in deployments:
            continue
        d = deployments[component] or {}
        spec, st = d.get("spec", {}), d.get("status", {})
        out[key] = ComponentStatus(
            desired=int(spec.get("replicas", 1) if d else 0),
            ready=int(st.get("readyReplicas", 0)),
            updated=int(st.get("updatedReplicas", 0)),
            available=int(st.get("availableReplicas", 0)),
        )
    return out


def _rolling(deployments: Mapping[str, Mapping[str, Any] | None]) -> list[str]:
    behind = []
    for component, d in deployments.items():
        if not d:
            behind.append(component)
            continue
        spec, st = d.get("spec", {}), d.get("status", {})
        want = int(spec.get("replicas", 1))
        stale = int(st.get("observedGeneration", 0)) < int(d["metadata"].get("generation", 0))
        if (
            stale
            or int(st.get("updatedReplicas", 0)) < want
            or int(st.get("availableReplicas", 0)) < want
        ):
            behind.append(component)
    return behind


def _health(report: PipelineHealth) -> HealthStatus:
    return HealthStatus(
        verdict=report.verdict,
        reason=report.reason,
        lag=report.lag,
        dead_letters=report.dead_letters,
        workers=len(report.workers),
        checked_at=rfc3339(datetime.fromtimestamp(report.checked_at, UTC)),
        streams=[
            StreamStatus(
                name=s.name,
                length=s.length,
                lag=s.lag,
                pending=s.pending,
                oldest_pending_seconds=round(s.oldest_pending_seconds, 1),
                dead_letters=s.dead_letters,
                consumers=len(s.consumers),
            )
            for s in report.streams
        ],
    )


def _condition(
    previous: Sequence[Condition],
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> Condition:
    old = next((c for c in previous if c.type == kind), None)
    since = old.last_transition_time if old is not None and old.status == status else rfc3339(now)
    return Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def _ratio(parts: Mapping[str, ComponentStatus], keys: Sequence[str]) -> str:
    chosen = [parts[k] for k in keys if k in parts]
    return f"{sum(c.ready for c in chosen)}/{sum(c.desired for c in chosen)}"


def derive(
    previous: PipelineStatus,
    *,
    generation: int,
    now: datetime,
    deployments: Mapping[str, Mapping[str, Any] | None],
    problem: Problem | None,
    health: PipelineHealth | None,
    autoscaling: Mapping[str, AutoscalingStatus],
    log_worker_selector: str,
) -> PipelineStatus:
    """The status for what was observed (see the module doc)."""
    parts = components(deployments)
    behind = _rolling(deployments)
    pods_ready = bool(parts) and all(c.ready >= c.desired for c in parts.values())

    def cond(kind: str, status: str, reason: str, message: str) -> Condition:
        return _condition(
            previous.conditions, kind, status, reason, message, generation=generation, now=now
        )

    degraded = (
        cond("Degraded", "True", problem.reason, problem.message)
        if problem is not None
        else cond("Degraded", "False", "AsExpected", "every object is applied as declared")
    )
    progressing = (
        cond("Progressing", "True", "RollingOut", f"rolling out: {', '.join(sorted(behind))}")
        if behind
        else cond("Progressing", "False", "RolledOut", "every Deployment is up to date")
    )
    if health is None:
        flowing = cond("DataFlowing", "Unknown", "NotChecked", "the data plane was not read")
    elif health.verdict == UNKNOWN:
        flowing = cond("DataFlowing", "Unknown", UNKNOWN, health.reason)
    elif health.verdict == HEALTHY:
        flowing = cond("DataFlowing", "True", HEALTHY, health.reason)
    else:
        flowing = cond("DataFlowing", "False", health.verdict, health.reason)
    if problem is not None:
        ready = cond("Ready", "False", "Degraded", problem.message)
    elif not pods_ready:
        waiting = ", ".join(f"{k} {c.ready}/{c.desired}" for k, c in sorted(parts.items()))
        ready = cond("Ready", "False", "PodsNotReady", f"pods ready: {waiting}")
    elif flowing.status != "True":
        ready = cond("Ready", "False", "DataNotFlowing", f"pods are ready but {flowing.message}")
    else:
        ready = cond("Ready", "True", "Ready", "pods ready and data flowing")
    log = parts.get("logWorker")
    return PipelineStatus(
        observed_generation=generation,
        conditions=[ready, progressing, degraded, flowing],
        receivers=_ratio(parts, ["receiver"]),
        workers=_ratio(parts, ["logWorker", "metricsWorker"]),
        components=parts,
        health=_health(health) if health is not None else previous.health,
        autoscaling=dict(autoscaling),
        log_worker_replicas=log.ready if log is not None else 0,
        log_worker_selector=log_worker_selector,
    )


def transitions(old: PipelineStatus, new: PipelineStatus) -> list[Condition]:
    """The conditions of ``new`` whose status or reason differs from ``old``'s."""
    before = {c.type: (c.status, c.reason) for c in old.conditions}
    return [c for c in new.conditions if before.get(c.type) != (c.status, c.reason)]
