"""``killkrill db``: schema migrations and retention of the PostgreSQL aggregates.

The database URL comes from ``--database-url``, else ``DATABASE_URL``, else
``TEST_DATABASE_URL``; ``prune`` also reads the Redis of the metric streams
(``--redis-url``, else ``REDIS_URL``), where the entries still pending are.
"""

from __future__ import annotations

import os
import re

import click

from killkrill.errors import ConfigError

__all__ = ["db", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(value: str) -> float:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d``, ``2w`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value)
    if not m:
        raise click.BadParameter(f"{value!r} is not a duration such as 90s, 15m, 12h, 7d, 2w")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


_url = click.option(
    "--database-url", help="PostgreSQL URL (env DATABASE_URL, then TEST_DATABASE_URL)."
)


def _database_url(given: str | None) -> str:
    url = given or os.environ.get("DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not url:
        raise ConfigError("no database: pass --database-url or set DATABASE_URL")
    return url


@click.group()
def db() -> None:
    """The PostgreSQL schema (Alembic) and retention of metric aggregates."""


@db.command()
@_url
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="The database of this config file's metrics worker (its `metrics_worker` section, "
    "password file read): what the operator's metrics-worker pods migrate before starting.",
)
def upgrade(database_url: str | None, revision: str, config_file: str | None) -> None:
    """Migrate the database to REVISION (default: the newest). Idempotent; concurrent runs
    take turns (a PostgreSQL advisory lock), so every replica may run it at start."""
    from killkrill.db.migrate import current
    from killkrill.db.migrate import upgrade as run_upgrade

    if config_file is not None and database_url is None:
        from killkrill.config.workers import MetricsWorkerSettings

        settings = MetricsWorkerSettings.load(config_file)
        url = settings.database.url.get_secret_value()
    else:
        url = _database_url(database_url)
    before = current(url)
    run_upgrade(url, revision)
    after = current(url)
    click.echo(f"database at revision {after} (was {before or 'empty'})")


@db.command("current")
@_url
def current_cmd(database_url: str | None) -> None:
    """Print the revision the database is at, and the newest one shipped."""
    from killkrill.db.migrate import current, head

    click.echo(f"{current(_database_url(database_url)) or 'empty'} (head {head()})")


@db.command()
@_url
@click.option(
    "--redis-url",
    help="Redis holding the metric streams (env REDIS_URL): ledger rows of entries that "
    "may still be delivered there, to any consumer group, are kept.",
)
@click.option(
    "--older-than",
    required=True,
    help="Delete buckets that ended longer ago than this (e.g. 7d, 12h, 90m).",
)
@click.option(
    "--ledger-older-than",
    default=None,
    help="Also delete exactly-once ledger rows of entries created longer ago than this "
    "(default: the same age) that no consumer can be delivered again and no dead letter "
    "can bring back (read from Redis).",
)
@click.option(
    "--pipeline",
    default=None,
    help="Prune the aggregates of this pipeline only (default: of every pipeline).",
)
def prune(
    database_url: str | None,
    redis_url: str | None,
    older_than: str,
    ledger_older_than: str | None,
    pipeline: str | None,
) -> None:
    """Delete old metric buckets, series left without buckets, and spent ledger rows.

    A ledger row goes only once its entry can never be delivered again (below the lowest
    entry any consumer group of its stream may still receive, read from Redis); the rows of
    a stream Redis does not have are kept. Without Redis nothing is deleted.
    """
    import asyncio

    from killkrill.config import RedisSettings
    from killkrill.db import create_engine
    from killkrill.errors import ServiceUnavailable
    from killkrill.streams.connection import async_client
    from killkrill.workers.metrics.retention import RetentionReport
    from killkrill.workers.metrics.retention import prune as prune_round

    age = parse_duration(older_than)
    ledger_age = parse_duration(ledger_older_than) if ledger_older_than else age
    engine = create_engine(_database_url(database_url))
    url = redis_url or os.environ.get("REDIS_URL") or RedisSettings().url

    async def run() -> RetentionReport:
        async with async_client(url) as client:
            return await prune_round(
                engine,
                client,
                max_age_seconds=age,
                ledger_older_than_seconds=ledger_age,
                pipeline=pipeline,
            )

    try:
        report = asyncio.run(run())
    except ServiceUnavailable as exc:
        raise ServiceUnavailable(
            f"{exc}; nothing was deleted: `db prune` reads which entries are still pending "
            "from the Redis of the metric streams, pass --redis-url or set REDIS_URL"
        ) from exc
    finally:
        engine.dispose()
    result = report.result
    click.echo(
        f"deleted {result.buckets} bucket(s), {result.series} series, {result.ledger} ledger row(s)"
    )
    if report.unknown_streams:
        click.echo(
            f"kept the ledger rows of {', '.join(report.unknown_streams)}: no such stream in "
            "this Redis (is --redis-url / REDIS_URL the pipeline's?)"
        )
