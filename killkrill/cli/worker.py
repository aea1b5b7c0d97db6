"""``killkrill worker``: the long-running workers, one command per sink."""

from __future__ import annotations

import sys

import click

from killkrill.cli.loop import run
from killkrill.jsonlog import configure_json_logging

__all__ = ["worker"]


@click.group()
def worker() -> None:
    """Long-running workers that drain the Redis streams into their sinks."""


# --- logs (log worker) ------------------------------------------------------------------------


@worker.command("logs")
@click.option(
    "--config",
    "-c",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML/JSON settings file (its `log_worker` section if present).",
)
@click.option("--redis-url", help="Redis URL (env REDIS_URL).")
@click.option("--elasticsearch-url", help="Elasticsearch URL (env ELASTICSEARCH_URL).")
@click.option(
    "--elasticsearch-api-key-file",
    type=click.Path(dir_okay=False),
    help="File holding an Elasticsearch API key (a mounted Secret; read at start).",
)
@click.option(
    "--elasticsearch-username", help="User for basic auth (with --elasticsearch-password-file)."
)
@click.option(
    "--elasticsearch-password-file",
    type=click.Path(dir_okay=False),
    help="File holding the basic-auth password (a mounted Secret; read at start).",
)
@click.option(
    "--elasticsearch-ca-file",
    type=click.Path(dir_okay=False),
    help="PEM file of the CA that signed the cluster's certificate.",
)
@click.option(
    "--elasticsearch-verify-certs/--no-elasticsearch-verify-certs",
    default=None,
    help="Verify the cluster's TLS certificate (default on; off logs a warning).",
)
@click.option("--index-prefix", help="Documents go to <prefix>-YYYY.MM.DD (default logs).")
@click.option("--pipeline", help="Pipeline name (default: default).")
@click.option("--stream", help="Stream to read (default: the pipeline's logs stream).")
@click.option("--consumer-group", help="Consumer group (default log-worker).")
@click.option("--consumer-name", help="Consumer name, unique per process (default host-pid).")
@click.option("--batch-size", type=int, help="Entries per batch and per _bulk (default 500).")
@click.option("--claim-idle-ms", type=int, help="Reclaim others' pending entries after (ms).")
@click.option("--max-deliveries", type=int, help="Dead-letter after this many deliveries.")
@click.option(
    "--max-dead-letters", type=int, help="Bound of the dead-letter stream (default 100000)."
)
@click.option("--environment", help="`environment` field added to documents.")
@click.option("--ops-port", type=int, help="Port of /healthz /readyz /metrics (default 9102).")
@click.option("--log-level", help="debug, info (default), warning or error.")
def logs(
    config_file: str | None,
    redis_url: str | None,
    elasticsearch_url: str | None,
    elasticsearch_api_key_file: str | None,
    elasticsearch_username: str | None,
    elasticsearch_password_file: str | None,
    elasticsearch_ca_file: str | None,
    elasticsearch_verify_certs: bool | None,
    index_prefix: str | None,
    pipeline: str | None,
    stream: str | None,
    consumer_group: str | None,
    consumer_name: str | None,
    batch_size: int | None,
    claim_idle_ms: int | None,
    max_deliveries: int | None,
    max_dead_letters: int | None,
    environment: str | None,
    ops_port: int | None,
    log_level: str | None,
) -> None:
    """Index the logs stream into Elasticsearch until SIGTERM (then finish, ack, exit 0).

    Settings: defaults < --config file < KILLKRILL_* env (e.g.
    KILLKRILL_CONSUMER__BATCH_SIZE, KILLKRILL_ELASTICSEARCH__API_KEY_FILE) <
    REDIS_URL / ELASTICSEARCH_URL < flags. Elasticsearch credentials come from files (a
    mounted Secret), never from flags; no credential is ever logged (URLs are shown redacted).
    """
    from killkrill.config.workers import LogWorkerSettings
    from killkrill.workers.logs.service import serve

    settings = LogWorkerSettings.load(
        config_file,
        overrides={
            "log_level": log_level,
            "redis.url": redis_url,
            "elasticsearch.url": elasticsearch_url,
            "elasticsearch.api_key_file": elasticsearch_api_key_file,
            "elasticsearch.username": elasticsearch_username,
            "elasticsearch.password_file": elasticsearch_password_file,
            "elasticsearch.ca_file": elasticsearch_ca_file,
            "elasticsearch.verify_certs": elasticsearch_verify_certs,
            "elasticsearch.index_prefix": index_prefix,
            "pipeline": pipeline,
            "stream": stream,
            "consumer.group": consumer_group,
            "consumer.name": consumer_name,
            "consumer.batch_size": batch_size,
            "consumer.claim_idle_ms": claim_idle_ms,
            "consumer.max_deliveries": max_deliveries,
            "consumer.max_dead_letters": max_dead_letters,
            "transform.environment": environment,
            "ops.port": ops_port,
        },
    )
    configure_json_logging(settings.log_level)
    sys.exit(run(serve(settings)))


# --- metrics (metrics worker) -----------------------------------------------------------------


@worker.command("metrics")
@click.option(
    "--config",
    "-c",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="YAML/JSON settings file (its `metrics_worker` section if present).",
)
@click.option("--redis-url", help="Redis URL (env REDIS_URL).")
@click.option("--database-url", help="PostgreSQL URL (env DATABASE_URL).")
@click.option("--pipeline", help="Pipeline name (default: default).")
@click.option(
    "--stream",
    "streams",
    multiple=True,
    help="Metric stream name, read as <name>-stream; repeat for several (default: metrics).",
)
@click.option("--consumer-group", help="Consumer group (default metrics-worker).")
@click.option("--consumer-name", help="Consumer name, unique per process (default host-pid).")
@click.option("--batch-size", type=int, help="Entries per batch and transaction (default 1000).")
@click.option("--bucket-seconds", type=int, help="Aggregation bucket width (default 60).")
@click.option("--max-series-per-metric", type=int, help="Cardinality cap (default 10000).")
@click.option("--claim-idle-ms", type=int, help="Reclaim others' pending entries after (ms).")
@click.option("--max-deliveries", type=int, help="Dead-letter after this many deliveries.")
@click.option(
    "--max-dead-letters", type=int, help="Bound of the dead-letter stream (default 100000)."
)
@click.option("--retention", help="Delete buckets older than this (e.g. 7d; default 7d).")
@click.option("--prune-interval", type=float, help="Seconds between pruning rounds (0: off).")
@click.option("--ops-port", type=int, help="Port of /healthz /readyz /metrics (default 9103).")
@click.option("--log-level", help="debug, info (default), warning or error.")
def metrics(
    config_file: str | None,
    redis_url: str | None,
    database_url: str | None,
    pipeline: str | None,
    streams: tuple[str, ...],
    consumer_group: str | None,
    consumer_name: str | None,
    batch_size: int | None,
    bucket_seconds: int | None,
    max_series_per_metric: int | None,
    claim_idle_ms: int | None,
    max_deliveries: int | None,
    max_dead_letters: int | None,
    retention: str | None,
    prune_interval: float | None,
    ops_port: int | None,
    log_level: str | None,
) -> None:
    """Aggregate metric streams into PostgreSQL until SIGTERM (then finish, ack, exit 0).

    Settings: defaults < --config file < KILLKRILL_* env (e.g.
    KILLKRILL_AGGREGATION__BUCKET_SECONDS) < REDIS_URL / DATABASE_URL < flags. The database
    must be migrated first (`killkrill db upgrade`).
    """
    from killkrill.cli.db import parse_duration
    from killkrill.config.workers import MetricsWorkerSettings
    from killkrill.workers.metrics.service import serve

    settings = MetricsWorkerSettings.load(
        config_file,
        overrides={
            "log_level": log_level,
            "redis.url": redis_url,
            "database.url": database_url,
            "pipeline": pipeline,
            "streams": list(streams) or None,
            "consumer.group": consumer_group,
            "consumer.name": consumer_name,
            "consumer.batch_size": batch_size,
            "consumer.claim_idle_ms": claim_idle_ms,
            "consumer.max_deliveries": max_deliveries,
            "consumer.max_dead_letters": max_dead_letters,
            "aggregation.bucket_seconds": bucket_seconds,
            "aggregation.max_series_per_metric": max_series_per_metric,
            "retention.max_age_seconds": parse_duration(retention) if retention else None,
            "retention.interval_seconds": prune_interval,
            "ops.port": ops_port,
        },
    )
    configure_json_logging(settings.log_level)
    sys.exit(run(serve(settings)))
