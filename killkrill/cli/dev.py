"""``killkrill dev``: the local development services, a Docker engine of the project's own and
the container image, and a smoke check of the pipeline."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

import click

from killkrill.dev import ServiceManager
from killkrill.dev.smoke import run_pipeline_smoke, run_smoke

if TYPE_CHECKING:
    from killkrill.dev.docker_engine import DockerEngine

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
    ServiceManager(names, echo=lambda line: click.echo(line, err=True)).up()


@services.command()
@_names
def down(names: tuple[str, ...]) -> None:
    """Stop the services and wait until no process of theirs is left."""
    ServiceManager(names, echo=lambda line: click.echo(line, err=True)).down()


@services.command()
@_names
def status(names: tuple[str, ...]) -> None:
    """Show each service's state, URL and pid; exit 1 when one is not running."""
    statuses = ServiceManager(names).status()
    for st in statuses:
        click.echo(st.line())
    if any(st.state == "stopped" for st in statuses):
        raise SystemExit(1)


@services.command()
@_names
def env(names: tuple[str, ...]) -> None:
    """Print ``export`` lines for the services' URLs: ``eval "$(killkrill dev services env)"``."""
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
    env = ServiceManager().env()
    for line in run_smoke(env):
        click.echo(line)
    if pipeline:
        for line in run_pipeline_smoke(env, logs=logs):
            click.echo(line)


@dev.group()
def docker() -> None:
    """A Docker engine of the project's own (Debian's docker.io, installed when missing),
    its socket and state under the dev state dir, images kept in the cache dir."""


def _engine() -> DockerEngine:
    from killkrill.dev.docker_engine import DockerEngine

    return DockerEngine()


@docker.command("up")
def docker_up() -> None:
    """Install if missing and start dockerd; a no-op when it runs."""
    click.echo(_engine().up(), err=True)


@docker.command("down")
def docker_down() -> None:
    """Stop dockerd and wait until it, its containerd and every container are gone."""
    click.echo(_engine().down(), err=True)


@docker.command("status")
def docker_status() -> None:
    """Show the engine's state, socket and pid; exit 1 when it is not running."""
    status = _engine().status()
    click.echo(status.line())
    if status.state != "running":
        raise SystemExit(1)


@docker.command("env")
def docker_env() -> None:
    """Print ``export DOCKER_HOST=...``: ``eval "$(killkrill dev docker env)"``."""
    click.echo(f"export DOCKER_HOST={shlex.quote(_engine().local_url())}")


@docker.command("base")
@click.option("--rebuild", is_flag=True, help="Build even when images of this recipe exist.")
def docker_base(rebuild: bool) -> None:
    """Build the Debian 12 base images (debootstrap, cached by recipe hash): the runtime base
    killkrill/debian:bookworm and the build base killkrill/debian:bookworm-build."""
    from killkrill.dev.base_image import build_base_images

    build_base_images(_engine(), rebuild=rebuild, echo=lambda line: click.echo(line, err=True))


@docker.command("image")
@click.option(
    "--context",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The repository (its Dockerfile and sources).",
)
@click.option(
    "--base-image",
    help="Runtime base (default: the local killkrill/debian:bookworm, built when missing).",
)
@click.option("--build-image", help="Build stage base (default: the local build base).")
def docker_image(context: Path, base_image: str | None, build_image: str | None) -> None:
    """Build the KillKrill image (killkrill/killkrill:<version> and :dev) with BuildKit, the
    host's pip settings and CA bundle passed as build secrets."""
    from killkrill.dev.image import build_image as build

    build(
        _engine(),
        context,
        base_image=base_image,
        build_image=build_image,
        echo=lambda line: click.echo(line, err=True),
    )
