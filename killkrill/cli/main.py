"""The ``killkrill`` command.

Subcommands are imported when they are run (or listed by ``--help``), not at start: each
pulls in its own clients (Elasticsearch, SQLAlchemy, uvicorn, ...), and a command should
pay only for what it uses (``killkrill dlq list`` starts in a fraction of the time).
"""

from __future__ import annotations

import importlib
import sys

import click

from killkrill import __version__
from killkrill.errors import KillKrillError

__all__ = ["cli", "main"]

_COMMANDS = {
    "dev": "killkrill.cli.dev:dev",
    "receiver": "killkrill.cli.receiver:receiver",
    "worker": "killkrill.cli.worker:worker",
    "dlq": "killkrill.cli.dlq:dlq",
    "db": "killkrill.cli.db:db",
    "up": "killkrill.cli.up:up",
    "status": "killkrill.cli.status:status",
    "operator": "killkrill.cli.operator:operator",
    "bench": "killkrill.cli.bench:bench",
}
"""Subcommand name -> ``module:attribute`` of its click command."""


class _LazyGroup(click.Group):
    """A group whose subcommands (:data:`_COMMANDS`) are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module), attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=_LazyGroup)
@click.version_option(__version__, prog_name="killkrill")
def cli() -> None:
    """KillKrill: receivers -> Redis Streams -> Elasticsearch / PostgreSQL."""


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
