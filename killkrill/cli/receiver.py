"""``killkrill receiver``: run the HTTP API, the syslog server, or both.

Settings come from, lowest to highest: defaults, ``--config`` (a YAML/JSON file, its
``receivers`` section if it has one), ``KILLKRILL_*`` env (``KILLKRILL_HTTP__PORT``),
``REDIS_URL``, and the flags below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from killkrill.config import ReceiverSettings

__all__ = ["receiver"]

_config = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/JSON settings file.",
)
_redis = click.option("--redis-url", help="Redis URL (env REDIS_URL).")
_pipeline = click.option("--pipeline", help="Pipeline name; prefixes stream keys.")
_auth = click.option(
    "--auth/--no-auth",
    default=None,
    help="Require API keys (default on). --no-auth is for local runs only.",
)
_log_level = click.option("--log-level", help="debug, info (default), warning or error.")
_ops_port = click.option(
    "--ops-port", type=int, help="Port of /healthz, /readyz, /metrics (default 9140; 0: any)."
)


@click.group()
def receiver() -> None:
    """Receivers: validate what shippers send and append it to Redis Streams."""


@receiver.command()
@_config
@_redis
@_pipeline
@_auth
@_log_level
@_ops_port
@click.option("--host", help="Address to listen on (default 0.0.0.0).")
@click.option("--port", type=int, help="Port (default 8080).")
def http(
    config_file: Path | None,
    redis_url: str | None,
    pipeline: str | None,
    auth: bool | None,
    log_level: str | None,
    ops_port: int | None,
    host: str | None,
    port: int | None,
) -> None:
    """The HTTP API: /api/v1/logs, /api/v1/metrics, /api/v1/write, /healthz, /readyz, /metrics."""
    overrides = {"http.host": host, "http.port": port, "ops.port": ops_port}
    settings = _load(config_file, redis_url, pipeline, auth, log_level, overrides)
    _run(settings, http=True, syslog=False)


@receiver.command()
@_config
@_redis
@_pipeline
@_log_level
@_ops_port
@click.option("--host", help="Address to listen on (default 0.0.0.0).")
@click.option("--port", type=int, help="UDP and TCP port (default 5140).")
@click.option("--udp/--no-udp", default=None, help="Listen on UDP (default on).")
@click.option("--tcp/--no-tcp", default=None, help="Listen on TCP (default on).")
@click.option("--tls-port", type=int, help="Port for syslog over TLS (RFC 5425).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="PEM certificate.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key.")
def syslog(
    config_file: Path | None,
    redis_url: str | None,
    pipeline: str | None,
    log_level: str | None,
    ops_port: int | None,
    host: str | None,
    port: int | None,
    udp: bool | None,
    tcp: bool | None,
    tls_port: int | None,
    tls_cert: str | None,
    tls_key: str | None,
) -> None:
    """The syslog server: RFC 5424 and 3164 over UDP, TCP (octet-counted or LF) and TLS."""
    overrides = {
        "syslog.host": host,
        "syslog.port": port,
        "syslog.udp": udp,
        "syslog.tcp": tcp,
        "syslog.tls_port": tls_port,
        "syslog.tls_cert": tls_cert,
        "syslog.tls_key": tls_key,
        "ops.port": ops_port,
    }
    settings = _load(config_file, redis_url, pipeline, None, log_level, overrides)
    _run(settings, http=False, syslog=True)


@receiver.command("all")
@_config
@_redis
@_pipeline
@_auth
@_log_level
@_ops_port
def run_all(
    config_file: Path | None,
    redis_url: str | None,
    pipeline: str | None,
    auth: bool | None,
    log_level: str | None,
    ops_port: int | None,
) -> None:
    """HTTP API and syslog server in one process, with one ops port."""
    settings = _load(config_file, redis_url, pipeline, auth, log_level, {"ops.port": ops_port})
    _run(settings, http=True, syslog=True)


def _load(
    config_file: Path | None,
    redis_url: str | None,
    pipeline: str | None,
    auth: bool | None,
    log_level: str | None,
    overrides: dict[str, Any],
) -> ReceiverSettings:
    return ReceiverSettings.load(
        config_file,
        {
            **overrides,
            "redis.url": redis_url,
            "pipeline": pipeline,
            "auth.enabled": auth,
            "log_level": log_level,
        },
    )


def _run(settings: ReceiverSettings, *, http: bool, syslog: bool) -> None:
    # Imported here so `killkrill --help` stays fast and light.
    from killkrill.cli.loop import run
    from killkrill.jsonlog import configure_json_logging
    from killkrill.receivers.run import serve

    configure_json_logging(settings.log_level)
    run(serve(settings, http=http, syslog=syslog))
