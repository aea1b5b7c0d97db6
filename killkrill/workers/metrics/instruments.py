"""The metrics worker's own Prometheus metrics (``killkrill_metrics_worker_*``).

Each worker holds its own :class:`~prometheus_client.CollectorRegistry`, so several workers
in one process (tests) do not clash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Instruments"]

_P = "killkrill_metrics_worker"


@dataclass
class Instruments:
    """Counters, gauges and histograms the worker updates as it goes."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.read = Counter(
            f"{_P}_entries_read",
            "Stream entries read (new and redelivered).",
            ["stream"],
            registry=r,
        )
        self.applied = Counter(
            f"{_P}_samples_applied",
            "Samples folded into the aggregates (first delivery).",
            ["stream"],
            registry=r,
        )
        self.duplicates = Counter(
            f"{_P}_duplicates_skipped",
            "Redelivered entries found in the ledger, acked without changing anything.",
            ["stream"],
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{_P}_dead_lettered",
            "Entries moved to the dead-letter stream.",
            ["stream"],
            registry=r,
        )
        self.dead_letter_refused = Counter(
            f"{_P}_dead_letter_refused",
            "Entries that could not be dead-lettered because the dead-letter stream was at "
            "its bound (left pending; counted at each attempt). Non-zero: the stream stopped.",
            ["stream"],
            registry=r,
        )
        self.series_refused = Counter(
            f"{_P}_series_refused",
            "Samples refused by the per-metric cardinality cap.",
            ["name"],
            registry=r,
        )
        self.db_errors = Counter(
            f"{_P}_db_errors",
            "Failed PostgreSQL transactions by kind: connect/unavailable/other (retried), "
            "data (refused for what the batch holds: split, the entries at fault "
            "dead-lettered).",
            ["kind"],
            registry=r,
        )
        self.rows_upserted = Counter(
            f"{_P}_rows_upserted",
            "Aggregate rows merged by INSERT ... ON CONFLICT.",
            registry=r,
        )
        self.write_seconds = Histogram(
            f"{_P}_write_seconds",
            "Seconds per PostgreSQL transaction of one batch.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.backlog = Gauge(
            f"{_P}_backlog_entries",
            "Entries waiting on the stream (its length).",
            ["stream"],
            registry=r,
        )
        self.pruned = Counter(
            f"{_P}_pruned_rows",
            "Rows deleted by retention pruning.",
            ["table"],
            registry=r,
        )
        self.refresh_failures = Counter(
            f"{_P}_exposition_refresh_failures",
            "Refreshes of the aggregates snapshot served at /metrics that failed (timed out, "
            "refused, connection lost); the previous snapshot is served meanwhile.",
            registry=r,
        )
        self.snapshot_age = Gauge(
            f"{_P}_exposition_snapshot_age_seconds",
            "Seconds since the aggregates served at /metrics were last read from "
            "PostgreSQL (+Inf: never).",
            registry=r,
        )
        self.snapshot_age.set_function(lambda: math.inf)
