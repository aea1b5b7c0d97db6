"""Aggregates updated in place (HOT): no index on last_seen, free room in every page.

Every batch updates the current bucket of each series it touches. With an index on
``last_seen`` (which every update changes) and full pages, each update wrote a new row
version plus an entry in all four indexes. Without that index no indexed column changes on
update, and with ``fillfactor = 70`` the new version fits in the same page: a heap-only
tuple update, about half the cost. The exposition query finds recent buckets through
``bucket_start`` instead (a bucket is at most a day wide, which the new check makes a rule
of the table, not only of the configuration).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_aggregated_metrics_last_seen", table_name="aggregated_metrics")
    op.execute("ALTER TABLE aggregated_metrics SET (fillfactor = 70)")
    op.create_check_constraint(
        "ck_aggregated_metrics_bucket_seconds_max", "aggregated_metrics", "bucket_seconds <= 86400"
    )


def downgrade() -> None:
    op.drop_constraint(
        "ck_aggregated_metrics_bucket_seconds_max", "aggregated_metrics", type_="check"
    )
    op.execute("ALTER TABLE aggregated_metrics RESET (fillfactor)")
    op.create_index("ix_aggregated_metrics_last_seen", "aggregated_metrics", ["last_seen"])
