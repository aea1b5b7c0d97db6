"""Options several commands share, declared once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

__all__ = ["pipeline_file", "secrets_dir"]


def pipeline_file(*, multiple: bool, help: str) -> Callable[[Any], Any]:
    """``-f/--file``: a Pipeline document (``files``, a tuple, when ``multiple``)."""
    return click.option(
        "-f",
        "--file",
        "files" if multiple else "file",
        multiple=multiple,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=help,
    )


secrets_dir = click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("secrets"),
    show_default=True,
    help="Where a Pipeline document's referenced Secrets are read: <dir>/<secret name>/<key> "
    "(the layout of a Secret mounted in a pod).",
)
"""``--secrets-dir``: where ``secretRef``s are read for a local run."""
