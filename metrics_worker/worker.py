"""Seed-compatible alias: ``from metrics_worker.worker import MetricsWorker``. No logic here."""

from killkrill.workers.metrics.worker import MetricsWorker

__all__ = ["MetricsWorker"]
