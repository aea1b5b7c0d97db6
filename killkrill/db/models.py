"""SQLAlchemy models. The schema itself is created by Alembic migrations only."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base"]


class Base(DeclarativeBase):
    """Declarative base of every KillKrill table."""
