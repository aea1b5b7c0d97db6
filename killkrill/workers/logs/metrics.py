"""The log worker's own Prometheus metrics (``killkrill_log_worker_*``).

Each :class:`~killkrill.workers.logs.worker.LogWorker` has its own registry, so several
workers in one process (tests) never collide and ``/metrics`` shows exactly one worker.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from killkrill.workers.base import DELIVERED, BatchResult, Outcome, Reject

__all__ = ["LogWorkerMetrics"]

_PREFIX = "killkrill_log_worker"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class LogWorkerMetrics:
    """Counters, gauges and histograms of one log worker, in :attr:`registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.consumed = Counter(
            f"{_PREFIX}_consumed", "Stream entries read (new and reclaimed).", registry=r
        )
        self.indexed = Counter(
            f"{_PREFIX}_indexed", "Entries Elasticsearch accepted and the worker acked.", registry=r
        )
        self.failed = Counter(
            f"{_PREFIX}_failed",
            "Entries not delivered by a batch: dead-lettered or left pending for a retry.",
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{_PREFIX}_dead_lettered", "Entries moved to the dead-letter stream.", registry=r
        )
        self.retries = Counter(
            f"{_PREFIX}_retries", "Bulk writes repeated after a retryable failure.", registry=r
        )
        self.bulk_items = Counter(
            f"{_PREFIX}_bulk_items",
            "Bulk items by outcome (delivered, retry, reject).",
            ["outcome"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            f"{_PREFIX}_batch_duration_seconds",
            "Wall time of one batch: read, parse, write with retries, ack.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.bulk_seconds = Histogram(
            f"{_PREFIX}_bulk_request_duration_seconds",
            "Wall time of one _bulk request.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.lag = Gauge(
            f"{_PREFIX}_stream_lag_entries",
            "Entries on the stream not yet delivered to the consumer group.",
            registry=r,
        )
        self.pending = Gauge(
            f"{_PREFIX}_pending_entries",
            "Entries delivered to the group and not yet acknowledged.",
            registry=r,
        )
        self.dead_letters = Gauge(
            f"{_PREFIX}_dead_letter_entries",
            "Entries in the dead-letter stream (bounded by consumer.max_dead_letters).",
            registry=r,
        )
        self.dead_letter_refused = Counter(
            f"{_PREFIX}_dead_letter_refused",
            "Entries that could not be dead-lettered because the dead-letter stream was at "
            "its bound (left pending; counted at each attempt). Non-zero: the worker stopped.",
            registry=r,
        )
        self.ready = Gauge(
            f"{_PREFIX}_ready",
            "1 when Redis and Elasticsearch answered the last check (and the dead-letter "
            "stream had room for what waits for it).",
            registry=r,
        )
        ProcessCollector(registry=r)

    def observe_batch(self, result: BatchResult, seconds: float) -> None:
        """Count what one batch did."""
        self.consumed.inc(result.read)
        self.indexed.inc(result.success)
        self.failed.inc(result.failed)
        self.dead_lettered.inc(result.dead_lettered)
        self.retries.inc(result.retries)
        self.batch_seconds.observe(seconds)

    def count_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Count bulk items by outcome."""
        answers = list(outcomes)
        delivered = answers.count(DELIVERED)  # the usual case: all of them, counted in C
        reject = 0 if delivered == len(answers) else sum(isinstance(o, Reject) for o in answers)
        retry = len(answers) - delivered - reject
        for name, n in (("delivered", delivered), ("retry", retry), ("reject", reject)):
            if n:
                self.bulk_items.labels(outcome=name).inc(n)
