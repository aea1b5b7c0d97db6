"""The built-in autoscaler's decision: worker replicas from consumer-group lag (pure).

``replicas = ceil(lag / targetLag)`` clamped to ``[minReplicas, maxReplicas]``. Scaling up
happens at once (a backlog grows while one waits); scaling down only once
``cooldownSeconds`` have passed since the last change, so replicas do not flap while a
backlog drains in waves. The decision and its inputs go into the Pipeline's status.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from killkrill.config.pipeline import AutoscalingSpec

__all__ = ["Decision", "decide"]


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    changed: bool


def decide(
    spec: AutoscalingSpec,
    *,
    current: int | None,
    lag: int,
    last_change: datetime | None,
    now: datetime,
) -> Decision:
    """The replicas a worker kind should run with ``lag`` entries waiting, given it runs
    ``current`` (None: unknown, e.g. before its Deployment exists) since ``last_change``."""
    wanted = min(spec.max_replicas, max(spec.min_replicas, math.ceil(lag / spec.target_lag)))
    why = (
        f"lag {lag} / targetLag {spec.target_lag} -> {math.ceil(lag / spec.target_lag)}, "
        f"within [{spec.min_replicas}, {spec.max_replicas}]"
    )
    if current is None or wanted > current:
        return Decision(wanted, f"scale up: {why}", current != wanted)
    if wanted == current:
        return Decision(current, f"steady: {why}", False)
    waited = (now - last_change).total_seconds() if last_change is not None else math.inf
    if waited < spec.cooldown_seconds:
        left = spec.cooldown_seconds - waited
        return Decision(current, f"cooling down ({left:.0f}s left) before {wanted}: {why}", False)
    return Decision(wanted, f"scale down: {why}", True)
