"""The SQLAlchemy engine factory every component uses."""

from __future__ import annotations

from typing import Any

import sqlalchemy
from sqlalchemy.engine import Engine

__all__ = ["create_engine", "normalise_url"]


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` and ``postgresql://`` URLs; use the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with pre-ping on (connections survive a database restart) and a small pool."""
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    return sqlalchemy.create_engine(normalise_url(url), **kwargs)
