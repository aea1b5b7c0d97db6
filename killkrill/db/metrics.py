"""Tables of the metrics worker: aggregates, the series registry and the applied-entry ledger.

* :class:`AggregatedMetric` - one row per (name, labels, bucket): count, sum, min, max, last
  value (by sample timestamp) and first/last sample time of the samples that fell in it.
* :class:`MetricSeries` - one row per distinct (name, labels); the cardinality cap counts
  these rows per name.
* :class:`AppliedEntry` - the exactly-once ledger: one row per stream entry whose sample is
  in the aggregates, written in the same transaction as the upserts. A redelivered entry
  finds its row and changes nothing.

Every row of the aggregates and the series registry belongs to one ``pipeline`` (several
share a database; the default pipeline is ``default``).

The schema is created by the Alembic revisions ``0002`` to ``0004`` only (``killkrill db
upgrade``); these classes describe it for queries and must be kept in step with the
migrations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Double,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from killkrill.db.models import Base

__all__ = ["AggregatedMetric", "AppliedEntry", "MetricSeries"]


class AggregatedMetric(Base):
    """Samples of one series aggregated over one time bucket.

    A bucket starts at ``bucket_start`` (UTC, a multiple of ``bucket_seconds`` since the
    epoch) and lasts ``bucket_seconds``. ``first_seen``/``last_seen`` are the earliest and
    latest *sample* timestamps in it; ``last`` is the value of the sample with the latest
    timestamp (ties: the one applied last, i.e. later in the stream).

    Rows are updated in place on every batch, so no index covers a column an update
    changes (``last_seen`` has none; recent buckets are found through ``bucket_start``, at
    most a day before ``last_seen``): with the table's free page room (``fillfactor`` 70)
    the updates are heap-only.
    """

    __tablename__ = "aggregated_metrics"
    __table_args__ = (
        UniqueConstraint(
            "pipeline",
            "name",
            "labels_hash",
            "bucket_seconds",
            "bucket_start",
            name="uq_aggregated_metrics_key",
        ),
        Index("ix_aggregated_metrics_bucket_start", "bucket_start"),
        CheckConstraint("bucket_seconds > 0", name="ck_aggregated_metrics_bucket_seconds"),
        CheckConstraint("bucket_seconds <= 86400", name="ck_aggregated_metrics_bucket_seconds_max"),
        CheckConstraint("count > 0", name="ck_aggregated_metrics_count"),
        # Room for the updated row version in the same page (a HOT update), see 0003.
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    pipeline: Mapped[str] = mapped_column(Text, nullable=False, server_default="default")
    name: Mapped[str] = mapped_column(Text, nullable=False)
    labels: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    labels_hash: Mapped[str] = mapped_column(
        String(32), nullable=False, doc="blake2b-128 hex of the labels as sorted JSON."
    )
    type: Mapped[str] = mapped_column(String(16), nullable=False, default="untyped")
    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    bucket_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    count: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sum: Mapped[float] = mapped_column(Double, nullable=False)
    min: Mapped[float] = mapped_column(Double, nullable=False)
    max: Mapped[float] = mapped_column(Double, nullable=False)
    last: Mapped[float] = mapped_column(Double, nullable=False)
    first_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    def __repr__(self) -> str:
        return (
            f"AggregatedMetric({self.name}{self.labels} @{self.bucket_start:%Y-%m-%dT%H:%M:%S}"
            f"/{self.bucket_seconds}s count={self.count} sum={self.sum})"
        )


class MetricSeries(Base):
    """One distinct (name, labels): what the per-name cardinality cap counts."""

    __tablename__ = "metric_series"

    pipeline: Mapped[str] = mapped_column(Text, primary_key=True, server_default="default")
    name: Mapped[str] = mapped_column(Text, primary_key=True)
    labels_hash: Mapped[str] = mapped_column(String(32), primary_key=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )


class AppliedEntry(Base):
    """A stream entry whose sample is in the aggregates (the exactly-once ledger).

    The entry ID ``<ms>-<seq>`` is kept as two integers so ranges compare numerically.
    Rows can go once the entry can no longer be delivered (it was acked): see
    :func:`killkrill.db.retention.prune_ledger`.
    """

    __tablename__ = "metric_applied_entries"

    stream: Mapped[str] = mapped_column(Text, primary_key=True)
    entry_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    entry_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    applied_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
