"""Data-plane health, measured: is data flowing, and if not, where is it stuck?

One module for ``killkrill status`` and the operator's status conditions. The facts come
from Redis (each stream's length, consumer-group lag, pending entries and their age,
consumers, dead letters; the workers' heartbeats) and from the sinks (Elasticsearch
cluster health, PostgreSQL ``SELECT 1``); :func:`judge` turns them into one verdict per
pipeline with a reason, in the style of Kubernetes conditions: ``Healthy``,
``Backlogged``, ``SinkDegraded``, ``Stalled``, ``DeadLettering``, ``NoWorkers``, ``NoData``
or ``Unknown``.

* :mod:`~killkrill.health.model` - verdict names, thresholds, the report's shape;
* :mod:`~killkrill.health.verdict` - facts -> verdict (pure);
* :mod:`~killkrill.health.probe` - reads the facts (:func:`check`).
"""

from killkrill.health.model import (
    BACKLOGGED,
    DEAD_LETTERING,
    HEALTHY,
    NO_DATA,
    NO_WORKERS,
    SINK_DEGRADED,
    STALLED,
    UNKNOWN,
    VERDICTS,
    PipelineHealth,
    SinkHealth,
    Thresholds,
)
from killkrill.health.probe import HealthTarget, StreamTarget, check
from killkrill.health.verdict import Verdict, judge

__all__ = [
    "BACKLOGGED",
    "DEAD_LETTERING",
    "HEALTHY",
    "NO_DATA",
    "NO_WORKERS",
    "SINK_DEGRADED",
    "STALLED",
    "UNKNOWN",
    "VERDICTS",
    "HealthTarget",
    "PipelineHealth",
    "SinkHealth",
    "StreamTarget",
    "Thresholds",
    "Verdict",
    "check",
    "judge",
]
