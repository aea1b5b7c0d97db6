"""PostgreSQL access: the SQLAlchemy engine and the database models (schema by Alembic)."""

from killkrill.db.engine import create_engine
from killkrill.db.metrics import AggregatedMetric, AppliedEntry, MetricSeries
from killkrill.db.models import Base

__all__ = ["AggregatedMetric", "AppliedEntry", "Base", "MetricSeries", "create_engine"]
