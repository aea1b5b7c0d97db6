"""Run the Alembic migrations shipped in :mod:`killkrill.db.migrations`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from pydantic import SecretStr

from killkrill.db.engine import normalise_url

__all__ = ["alembic_config", "current", "head", "upgrade"]

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | SecretStr) -> Config:
    """An Alembic config pointing at our migrations and at ``url``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str | SecretStr, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def current(url: str | SecretStr) -> str | None:
    """The revision the database at ``url`` is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision shipped in :mod:`killkrill.db.migrations`."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
