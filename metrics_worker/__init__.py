"""Seed-compatible import path for the metrics worker (real home: killkrill.workers.metrics)."""

from killkrill.workers.metrics import MetricsWorker

__all__ = ["MetricsWorker"]
