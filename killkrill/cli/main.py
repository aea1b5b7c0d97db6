"""The ``killkrill`` command."""

from __future__ import annotations

import sys

import click

from killkrill import __version__
from killkrill.cli.db import db
from killkrill.cli.dev import dev
from killkrill.cli.dlq import dlq
from killkrill.cli.receiver import receiver
from killkrill.cli.up import up
from killkrill.cli.worker import worker
from killkrill.errors import KillKrillError

__all__ = ["cli", "main"]


@click.group()
@click.version_option(__version__, prog_name="killkrill")
def cli() -> None:
    """KillKrill: receivers -> Redis Streams -> Elasticsearch / PostgreSQL."""


cli.add_command(dev)
cli.add_command(receiver)
cli.add_command(worker)
cli.add_command(dlq)
cli.add_command(db)
cli.add_command(up)


def main(argv: list[str] | None = None) -> None:
    """Entry point: KillKrill errors become one readable line and exit code 1."""
    try:
        cli.main(args=argv, prog_name="killkrill", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KillKrillError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
