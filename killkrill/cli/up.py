"""``killkrill up``: the whole pipeline in the foreground (see :mod:`killkrill.dev.pipeline`)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType

import click

from killkrill.cli.options import pipeline_file, secrets_dir
from killkrill.dev.pipeline import LocalPipeline, Ports
from killkrill.errors import KillKrillError

__all__ = ["up"]


@click.command()
@pipeline_file(
    multiple=False,
    help="Run the pipeline this Pipeline document describes (the YAML you would kubectl "
    "apply; its ports and auth apply, the other options do not).",
)
@secrets_dir
@click.option("--http-port", default=8080, show_default=True, help="Receivers' HTTP API port.")
@click.option("--syslog-port", default=5140, show_default=True, help="Syslog UDP/TCP port.")
@click.option("--auth/--no-auth", default=False, help="Require API keys (default off locally).")
def up(file: Path | None, secrets_dir: Path, http_port: int, syslog_port: int, auth: bool) -> None:
    """Run the whole pipeline in the foreground until Ctrl-C (uses REDIS_URL,
    ELASTICSEARCH_URL and DATABASE_URL, e.g. from `killkrill dev services env`).

    Without -f: the default pipeline (the seed's stream names)."""
    if file is not None:
        from killkrill.config.pipeline import load_pipeline

        document = load_pipeline(file)
        pipeline = LocalPipeline.from_pipeline(document, secrets_dir=secrets_dir.resolve())
        http_port = document.spec.receivers.http.port
        syslog_port = document.spec.receivers.syslog.tcp_port or syslog_port
        name = document.name
    else:
        pipeline = LocalPipeline({}, Ports(http=http_port, syslog=syslog_port), auth=auth)
        name = "default"
    pipeline.start()
    click.echo(
        f"pipeline {name} up: POST logs to http://127.0.0.1:{http_port}/api/v1/logs, metrics "
        f"to /api/v1/metrics, syslog to 127.0.0.1:{syslog_port}; `killkrill status"
        f"{f' -f {file}' if file else ''}` shows its health; Ctrl-C stops",
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
