"""Metrics worker tables: aggregated_metrics, metric_series, metric_applied_entries.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aggregated_metrics",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("labels", postgresql.JSONB(), nullable=False),
        sa.Column("labels_hash", sa.String(32), nullable=False),
        sa.Column("type", sa.String(16), nullable=False, server_default="untyped"),
        sa.Column("bucket_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket_seconds", sa.Integer(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Double(), nullable=False),
        sa.Column("min", sa.Double(), nullable=False),
        sa.Column("max", sa.Double(), nullable=False),
        sa.Column("last", sa.Double(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.UniqueConstraint(
            "name", "labels_hash", "bucket_seconds", "bucket_start", name="uq_aggregated_metrics_key"
        ),
        sa.CheckConstraint("bucket_seconds > 0", name="ck_aggregated_metrics_bucket_seconds"),
        sa.CheckConstraint("count > 0", name="ck_aggregated_metrics_count"),
    )
    op.create_index("ix_aggregated_metrics_bucket_start", "aggregated_metrics", ["bucket_start"])
    op.create_index("ix_aggregated_metrics_last_seen", "aggregated_metrics", ["last_seen"])
    op.create_table(
        "metric_series",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("labels_hash", sa.String(32), nullable=False),
        sa.Column("labels", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("name", "labels_hash", name="pk_metric_series"),
    )
    op.create_table(
        "metric_applied_entries",
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("entry_ms", sa.BigInteger(), nullable=False),
        sa.Column("entry_seq", sa.BigInteger(), nullable=False),
        sa.Column(
            "applied_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("stream", "entry_ms", "entry_seq", name="pk_metric_applied_entries"),
    )


def downgrade() -> None:
    op.drop_table("metric_applied_entries")
    op.drop_table("metric_series")
    op.drop_index("ix_aggregated_metrics_last_seen", table_name="aggregated_metrics")
    op.drop_index("ix_aggregated_metrics_bucket_start", table_name="aggregated_metrics")
    op.drop_table("aggregated_metrics")
