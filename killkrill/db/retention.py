"""Retention of the metrics tables: drop old buckets, orphaned series, spent ledger rows.

All functions take a SQLAlchemy connection inside a transaction the caller controls and
return how many rows they deleted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

__all__ = ["PruneResult", "prune_aggregates", "prune_ledger", "prune_ledger_older_than"]


@dataclass(frozen=True)
class PruneResult:
    """Rows deleted by one pruning round."""

    buckets: int = 0
    series: int = 0
    ledger: int = 0


def prune_aggregates(conn: Connection, older_than_seconds: float) -> PruneResult:
    """Delete buckets that *ended* more than ``older_than_seconds`` ago, then the series
    left with no bucket (so they stop counting towards the cardinality cap)."""
    buckets = conn.execute(
        text(
            "DELETE FROM aggregated_metrics WHERE bucket_start "
            "+ make_interval(secs => bucket_seconds) < now() - make_interval(secs => :age)"
        ),
        {"age": older_than_seconds},
    ).rowcount
    series = conn.execute(
        text(
            "DELETE FROM metric_series s WHERE NOT EXISTS (SELECT 1 FROM aggregated_metrics a "
            "WHERE a.name = s.name AND a.labels_hash = s.labels_hash)"
        )
    ).rowcount
    return PruneResult(buckets=buckets, series=series)


def prune_ledger(conn: Connection, stream: str, below: tuple[int, int]) -> int:
    """Delete ledger rows of ``stream`` with an entry ID lower than ``below`` (ms, seq).

    Exact when ``below`` is the lowest ID that can still be delivered: the lower of the
    group's first pending entry and the entry after its last-delivered one. Everything under
    it was acked (and deleted from the stream), so can never come back.
    """
    ms, seq = below
    return conn.execute(
        text(
            "DELETE FROM metric_applied_entries WHERE stream = :stream "
            "AND (entry_ms, entry_seq) < (:ms, :seq)"
        ),
        {"stream": stream, "ms": ms, "seq": seq},
    ).rowcount


def prune_ledger_older_than(conn: Connection, older_than_seconds: float) -> int:
    """Delete ledger rows of entries created more than ``older_than_seconds`` ago (by the
    time in their ID). Safe as long as no entry stays pending that long; the worker's own
    pruning uses the exact bound of :func:`prune_ledger` instead."""
    return conn.execute(
        text(
            "DELETE FROM metric_applied_entries WHERE entry_ms < "
            "(extract(epoch FROM now()) - :age) * 1000"
        ),
        {"age": older_than_seconds},
    ).rowcount
