"""The SQLAlchemy engine factory every component uses, and the liveness probe over it."""

from __future__ import annotations

from typing import Any

import sqlalchemy
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

__all__ = ["create_engine", "error_summary", "normalise_url", "ping"]


def normalise_url(url: str | SecretStr) -> str:
    """Accept ``postgres://`` and ``postgresql://`` URLs; use the psycopg2 driver. A
    :class:`~pydantic.SecretStr` (``database.url``) is read here, to open the connection."""
    if isinstance(url, SecretStr):
        url = url.get_secret_value()
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


def create_engine(url: str | SecretStr, **kwargs: Any) -> Engine:
    """An engine with pre-ping on (connections survive a database restart) and a small pool.

    libpq ``options`` given in both the URL (``?options=-csearch_path%3Dmy_schema``) and
    ``connect_args`` are joined, the URL's first: otherwise ``connect_args`` would silently
    replace what the URL asks for.
    """
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    parsed = make_url(normalise_url(url))
    connect_args = kwargs.get("connect_args")
    from_url = parsed.query.get("options")
    if connect_args and "options" in connect_args and from_url:
        joined = " ".join([*([from_url] if isinstance(from_url, str) else from_url)])
        kwargs["connect_args"] = {**connect_args, "options": f"{joined} {connect_args['options']}"}
    return sqlalchemy.create_engine(parsed, **kwargs)


def error_summary(exc: BaseException) -> str:
    """The first line of a database error (the driver's, when SQLAlchemy wrapped it): what
    PostgreSQL said, without the statement and parameters SQLAlchemy appends."""
    orig = getattr(exc, "orig", None) or exc
    text_ = str(orig).strip()
    return text_.splitlines()[0] if text_ else type(orig).__name__


def ping(engine: Engine) -> str | None:
    """Run ``SELECT 1`` over ``engine`` (blocking): None when PostgreSQL answered, else why
    not (:func:`error_summary`; libpq never puts the password in its messages)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # a probe answers; every failure is "not reachable"
        return error_summary(exc)
    return None
