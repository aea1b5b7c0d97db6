"""Aggregates and series belong to a pipeline: a ``pipeline`` column in both keys.

Several pipelines may share one database; each one's aggregates are its own (its metrics
worker writes, exposes, caps and prunes only rows of its pipeline). Existing rows belong to
the default pipeline. The ledger needs no column: its stream keys already carry the
pipeline's prefix.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("aggregated_metrics", "metric_series"):
        op.add_column(
            table, sa.Column("pipeline", sa.Text(), nullable=False, server_default="default")
        )
    op.drop_constraint("uq_aggregated_metrics_key", "aggregated_metrics", type_="unique")
    op.create_unique_constraint(
        "uq_aggregated_metrics_key",
        "aggregated_metrics",
        ["pipeline", "name", "labels_hash", "bucket_seconds", "bucket_start"],
    )
    op.drop_constraint("pk_metric_series", "metric_series", type_="primary")
    op.create_primary_key("pk_metric_series", "metric_series", ["pipeline", "name", "labels_hash"])


def downgrade() -> None:
    op.execute("DELETE FROM aggregated_metrics WHERE pipeline <> 'default'")
    op.execute("DELETE FROM metric_series WHERE pipeline <> 'default'")
    op.drop_constraint("pk_metric_series", "metric_series", type_="primary")
    op.create_primary_key("pk_metric_series", "metric_series", ["name", "labels_hash"])
    op.drop_constraint("uq_aggregated_metrics_key", "aggregated_metrics", type_="unique")
    op.create_unique_constraint(
        "uq_aggregated_metrics_key",
        "aggregated_metrics",
        ["name", "labels_hash", "bucket_seconds", "bucket_start"],
    )
    for table in ("aggregated_metrics", "metric_series"):
        op.drop_column(table, "pipeline")
