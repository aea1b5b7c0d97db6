"""``killkrill up``: the whole pipeline in the foreground (see :mod:`killkrill.dev.pipeline`)."""

from __future__ import annotations

import signal
import time
from types import FrameType

import click

from killkrill.dev.pipeline import LocalPipeline, Ports
from killkrill.errors import KillKrillError

__all__ = ["up"]


@click.command()
@click.option("--http-port", default=8080, show_default=True, help="Receivers' HTTP API port.")
@click.option("--syslog-port", default=5140, show_default=True, help="Syslog UDP/TCP port.")
@click.option("--auth/--no-auth", default=False, help="Require API keys (default off locally).")
def up(http_port: int, syslog_port: int, auth: bool) -> None:
    """Run the whole pipeline in the foreground until Ctrl-C (uses REDIS_URL,
    ELASTICSEARCH_URL and DATABASE_URL, e.g. from `killkrill dev services env`)."""
    pipeline = LocalPipeline({}, Ports(http=http_port, syslog=syslog_port), auth=auth)
    pipeline.start()
    click.echo(
        f"pipeline up: POST logs to http://127.0.0.1:{http_port}/api/v1/logs, metrics to "
        f"/api/v1/metrics, syslog to 127.0.0.1:{syslog_port} (UDP/TCP); Ctrl-C stops",
        err=True,
    )
    stopping = False

    def _stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stopping and pipeline.first_exit() is None:
        time.sleep(0.5)
    died = pipeline.first_exit()
    codes = pipeline.stop()
    click.echo(f"pipeline stopped: {codes}", err=True)
    if died is not None and not stopping:
        raise KillKrillError(f"{died.name} exited unexpectedly with code {codes[died.name]}")
    if any(codes.values()):
        raise SystemExit(1)
