"""What the operator writes into a ``Pipeline``'s status: the models behind its schema.

The CRD declares this schema (generated from these models by :mod:`killkrill.config.crd`),
so nothing the operator writes is pruned. Conditions have the ``metav1.Condition`` shape
(``type``, ``status``, ``reason``, ``message``, ``lastTransitionTime``,
``observedGeneration``): ``Ready``, ``Progressing``, ``Degraded`` and ``DataFlowing``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from killkrill.config.wire import Wire

__all__ = [
    "AutoscalingStatus",
    "ComponentStatus",
    "Condition",
    "HealthStatus",
    "PipelineStatus",
    "StreamStatus",
]


class Condition(Wire):
    """One condition, as ``metav1.Condition``."""

    type: str = Field(description="Ready, Progressing, Degraded or DataFlowing.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(description="One CamelCase word: why it is so.")
    message: str = Field(default="", description="What is wrong and how to fix it.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int = Field(default=0, description="The generation it was set for.")


class ComponentStatus(Wire):
    """Replicas of one Deployment of the pipeline, as its controller reports them."""

    desired: int = 0
    ready: int = 0
    updated: int = 0
    available: int = 0


class StreamStatus(Wire):
    """One stream of the pipeline, read from Redis."""

    name: str
    length: int = 0
    lag: int = 0
    pending: int = 0
    oldest_pending_seconds: float = 0.0
    dead_letters: int = 0
    consumers: int = 0


class HealthStatus(Wire):
    """The data plane's verdict (see :mod:`killkrill.health`)."""

    verdict: str = Field(description="Healthy, Backlogged, SinkDegraded, Stalled, ...")
    reason: str = ""
    lag: int = Field(default=0, description="Entries waiting in every stream.")
    dead_letters: int = Field(default=0, description="Entries in the dead-letter streams.")
    workers: int = Field(default=0, description="Live workers (heartbeats).")
    checked_at: str = Field(default="", description="When it was read (RFC 3339).")
    streams: list[StreamStatus] = Field(default_factory=list)


class AutoscalingStatus(Wire):
    """The last replica decision of the built-in autoscaler for one worker kind."""

    replicas: int
    lag: int
    reason: str
    decided_at: str = Field(description="When the replicas last changed (RFC 3339).")


class PipelineStatus(Wire):
    """Written by the operator; never edit it."""

    observed_generation: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    receivers: str = Field(default="", description="Ready/desired receiver pods, e.g. 2/2.")
    workers: str = Field(default="", description="Ready/desired worker pods, e.g. 3/3.")
    components: dict[str, ComponentStatus] = Field(
        default_factory=dict, description="receiver, logWorker, metricsWorker."
    )
    health: HealthStatus | None = None
    autoscaling: dict[str, AutoscalingStatus] = Field(
        default_factory=dict, description="logWorker, metricsWorker: the last decision."
    )
    log_worker_replicas: int = Field(
        default=0, description="Log worker pods (the scale subresource's status)."
    )
    log_worker_selector: str = Field(
        default="", description="Label selector of the log worker pods (scale subresource)."
    )
