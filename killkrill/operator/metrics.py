"""The operator's own Prometheus metrics (``killkrill_operator_*``), served on its ops port.

One registry per operator (tests run several in a process): reconciles by outcome and their
wall time, and the process's CPU, memory and file descriptors.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.process_collector import ProcessCollector

__all__ = ["ERROR", "OK", "PROBLEM", "OperatorMetrics"]

_PREFIX = "killkrill_operator"
_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

OK = "ok"
"""The Pipeline's objects and status are as declared."""
PROBLEM = "problem"
"""The reconcile ran and found something to fix (status Degraded, retried)."""
ERROR = "error"
"""The reconcile stopped on an error (the API or Redis did not answer...; retried)."""


class OperatorMetrics:
    """Counters and histograms of one operator, in :attr:`registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reconciles = Counter(
            f"{_PREFIX}_reconciles",
            "Reconciles of a Pipeline by outcome: ok, problem (status Degraded), error.",
            ["outcome"],
            registry=r,
        )
        for outcome in (OK, PROBLEM, ERROR):
            self.reconciles.labels(outcome)
        self.reconcile_seconds = Histogram(
            f"{_PREFIX}_reconcile_duration_seconds",
            "Wall time of one reconcile: Secrets, data-plane health, apply, status.",
            buckets=_BUCKETS,
            registry=r,
        )
        ProcessCollector(registry=r)

    def observe(self, outcome: str, seconds: float) -> None:
        """Count one reconcile."""
        self.reconciles.labels(outcome).inc()
        self.reconcile_seconds.observe(seconds)
