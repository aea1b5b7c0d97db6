"""``killkrill dev``: the local development services and a smoke check of the pipeline.

Each command imports what it drives when it runs: the services manager pulls in the Redis,
PostgreSQL and Elasticsearch clients (seconds on a busy machine), which other ``dev``
commands have no use for."""

from __future__ import annotations

import shlex

import click

__all__ = ["dev"]

_names = click.argument("names", nargs=-1, metavar="[redis|postgres|elasticsearch]...")


@click.group()
def dev() -> None:
    """Local development helpers."""


@dev.group()
def services() -> None:
    """Real Redis, PostgreSQL and Elasticsearch on loopback (installed when missing)."""


@services.command()
@_names
def up(names: tuple[str, ...]) -> None:
    """Install if missing and start the services; a no-op for those already running."""
    from killkrill.dev import ServiceManager

    ServiceManager(names, echo=lambda line: click.echo(line, err=True)).up()


@services.command()
@_names
def down(names: tuple[str, ...]) -> None:
    """Stop the services and wait until no process of theirs is left."""
    from killkrill.dev import ServiceManager

    ServiceManager(names, echo=lambda line: click.echo(line, err=True)).down()


@services.command()
@_names
def status(names: tuple[str, ...]) -> None:
    """Show each service's state, URL and pid; exit 1 when one is not running."""
    from killkrill.dev import ServiceManager

    statuses = ServiceManager(names).status()
    for st in statuses:
        click.echo(st.line())
    if any(st.state == "stopped" for st in statuses):
        raise SystemExit(1)


@services.command()
@_names
def env(names: tuple[str, ...]) -> None:
    """Print ``export`` lines for the services' URLs: ``eval "$(killkrill dev services env)"``."""
    from killkrill.dev import ServiceManager

    for key, value in ServiceManager(names).env().items():
        click.echo(f"export {key}={shlex.quote(value)}")


@dev.command()
@click.option(
    "--pipeline/--services-only",
    default=True,
    help="Also run the whole pipeline end to end on sample data (default).",
)
@click.option("--logs", default=1000, show_default=True, help="Log records to send through.")
def smoke(pipeline: bool, logs: int) -> None:
    """Check the services (XADD/XRANGE, INSERT/SELECT, index/search), then run the pipeline
    (receivers, log worker, metrics worker) end to end on sample data and show what arrived."""
    from killkrill.dev import ServiceManager
    from killkrill.dev.smoke import run_pipeline_smoke, run_smoke

    env = ServiceManager().env()
    for line in run_smoke(env):
        click.echo(line)
    if pipeline:
        for line in run_pipeline_smoke(env, logs=logs):
            click.echo(line)
