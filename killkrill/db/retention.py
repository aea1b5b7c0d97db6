"""Retention SQL of the metrics tables: old buckets, orphaned series, spent ledger rows.

All functions take a SQLAlchemy connection inside a transaction the caller controls and
return what they found or how many rows they deleted. Which ledger rows are spent is not a
database question (the entries' delivery state lives in Redis):
:mod:`killkrill.workers.metrics.retention` computes the bounds and calls these.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

__all__ = ["PruneResult", "ledger_streams", "prune_aggregates", "prune_ledger"]


@dataclass(frozen=True)
class PruneResult:
    """Rows deleted by one pruning round."""

    buckets: int = 0
    series: int = 0
    ledger: int = 0


def prune_aggregates(
    conn: Connection, older_than_seconds: float, *, pipeline: str | None = None
) -> PruneResult:
    """Delete buckets that *ended* more than ``older_than_seconds`` ago, then the series
    left with no bucket (so they stop counting towards the cardinality cap). Only rows of
    ``pipeline`` (None: of every pipeline)."""
    only = "" if pipeline is None else " AND pipeline = :pipeline"
    buckets = conn.execute(
        text(
            "DELETE FROM aggregated_metrics WHERE bucket_start "
            "+ make_interval(secs => bucket_seconds) < now() - make_interval(secs => :age)" + only
        ),
        {"age": older_than_seconds, "pipeline": pipeline},
    ).rowcount
    series = conn.execute(
        text(
            "DELETE FROM metric_series s WHERE NOT EXISTS (SELECT 1 FROM aggregated_metrics a "
            "WHERE a.pipeline = s.pipeline AND a.name = s.name "
            "AND a.labels_hash = s.labels_hash)" + only.replace("pipeline", "s.pipeline", 1)
        ),
        {"pipeline": pipeline},
    ).rowcount
    return PruneResult(buckets=buckets, series=series)


def ledger_streams(conn: Connection) -> list[str]:
    """The streams the ledger holds rows of, sorted. A loose index scan over the primary
    key (one probe per stream), so it stays cheap however many rows there are."""
    rows = conn.execute(
        text(
            """
            WITH RECURSIVE s(stream) AS (
                (SELECT stream FROM metric_applied_entries ORDER BY stream LIMIT 1)
                UNION ALL
                SELECT (SELECT e.stream FROM metric_applied_entries e
                        WHERE e.stream > s.stream ORDER BY e.stream LIMIT 1)
                FROM s WHERE s.stream IS NOT NULL
            )
            SELECT stream FROM s WHERE stream IS NOT NULL
            """
        )
    )
    return [str(stream) for (stream,) in rows]


def prune_ledger(
    conn: Connection,
    stream: str,
    below: tuple[int, int],
    *,
    older_than_seconds: float | None = None,
) -> int:
    """Delete ledger rows of ``stream`` with an entry ID lower than ``below`` (ms, seq) and,
    with ``older_than_seconds``, created (by the time in their ID) longer ago than that.

    Exact when ``below`` is the lowest ID that may still be delivered to any consumer
    (:func:`killkrill.streams.info.delivery_floor`): every entry under it was acknowledged
    and deleted from the stream, so can never come back.
    """
    ms, seq = below
    sql = (
        "DELETE FROM metric_applied_entries WHERE stream = :stream "
        "AND (entry_ms, entry_seq) < (:ms, :seq)"
    )
    params: dict[str, object] = {"stream": stream, "ms": ms, "seq": seq}
    if older_than_seconds is not None:
        sql += " AND entry_ms < (extract(epoch FROM now()) - :age) * 1000"
        params["age"] = older_than_seconds
    return conn.execute(text(sql), params).rowcount
