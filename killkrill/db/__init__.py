"""PostgreSQL access: the SQLAlchemy engine and the database models (schema by Alembic)."""

from killkrill.db.engine import create_engine
from killkrill.db.models import Base

__all__ = ["Base", "create_engine"]
