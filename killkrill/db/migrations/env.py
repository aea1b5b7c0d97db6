"""Alembic environment: online migrations against the URL set by killkrill.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool, text

from killkrill.db.models import Base

config = context.config
target_metadata = Base.metadata
LOCK_KEY = 0x6B6B6462  # 'kkdb': the advisory lock key of KillKrill's migrations


def run_migrations_online() -> None:
    connectable = engine_from_config(
        config.get_section(config.config_ini_section, {}),
        prefix="sqlalchemy.",
        poolclass=pool.NullPool,
    )
    with connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Concurrent upgrades (every metrics-worker pod migrates at start) take
                # turns: the next one reads the revision the previous one committed.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
