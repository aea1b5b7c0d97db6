"""``killkrill dlq list|replay|purge``: inspect, re-queue and delete a stream's dead letters.

Generic over the source stream (default ``logs-stream``): the dead-letter stream is
``<stream>:dead-letter`` unless ``--dead-letter-stream`` names another. Every command takes
the same filters, all of which must hold: ``--id`` (repeatable), ``--from``/``--to`` (an
inclusive dead-letter ID range; an ID may be given as its milliseconds alone),
``--reason`` (a case-insensitive substring of the reason) and ``--reason-regex`` (a Python
regular expression searched in it). Each command takes the dead letters as they are when it
starts: letters added meanwhile (by a worker still failing) are left for the next run.

* ``replay`` puts each letter's original ``data`` back on its source stream, carrying the
  identity of the entry it first was, so the workers' idempotent writes (Elasticsearch
  ``_id``, metrics ledger) never count it twice; see :mod:`killkrill.streams.replay`.
  Without ``--id`` or ``--all`` it takes the oldest ``--count`` letters that match.
  ``--dry-run`` lists what would be replayed and changes nothing. ``--rate N`` replays at
  most N letters a second. It never pushes a source stream past the receivers' backlog
  limit (``backpressure.max_backlog`` of ``--config``/``KILLKRILL_BACKPRESSURE__MAX_BACKLOG``,
  or ``--max-backlog``): at the limit it waits up to ``--backlog-wait`` seconds for the
  workers to catch up, then stops with exit code 1, saying how far it got.
* ``purge`` deletes letters for good. It needs a filter or ``--all`` (no filter and no
  ``--all`` is a usage error: there is no implicit "everything"), and it deletes only with
  ``--yes``: without it, it lists what it would delete, deletes nothing and exits 1
  (``--dry-run`` does the same and exits 0).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson
import redis
from pydantic import SecretStr
from redis.exceptions import RedisError

from killkrill.config import ReceiverSettings
from killkrill.streams.connection import sync_client
from killkrill.streams.dead_letter import DeadLetter, DeadLetterFilter, iter_dead_letters
from killkrill.streams.names import StreamNames, stream_names
from killkrill.streams.replay import purge_dead_letters, replay_dead_letters

__all__ = ["dlq"]

_DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
_ENTRY_ID = re.compile(r"[0-9]+-[0-9]+")
_RANGE_ID = re.compile(r"[0-9]+(-[0-9]+)?")
_PREVIEW = 20
"""Letters a purge without --yes lists before the count of the rest."""


def _options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Where the dead letters are."""
    f = click.option(
        "--dead-letter-stream", help="Dead-letter stream (default <stream>:dead-letter)."
    )(f)
    f = click.option(
        "--pipeline", default="default", show_default=True, help="Pipeline (prefixes keys)."
    )(f)
    f = click.option(
        "--stream",
        default="logs",
        show_default=True,
        help="Source stream: `logs`, `metrics`, a named metric stream or a full key.",
    )(f)
    return click.option(
        "--redis-url", help=f"Redis URL (env REDIS_URL, default {_DEFAULT_REDIS})."
    )(f)


def _filters(f: Callable[..., Any]) -> Callable[..., Any]:
    """Which dead letters (every condition given must hold), handed to ``f`` as one
    ``selection`` (a :class:`DeadLetterFilter`)."""

    @functools.wraps(f)
    def command(
        *args: Any,
        ids: tuple[str, ...],
        first: str | None,
        last: str | None,
        reason: str | None,
        reason_regex: str | None,
        **kwargs: Any,
    ) -> Any:
        return f(*args, selection=_selection(ids, first, last, reason, reason_regex), **kwargs)

    wrapped: Callable[..., Any] = command
    for option in (
        click.option("--reason-regex", help="Only letters whose reason matches this regex."),
        click.option(
            "--reason", help="Only letters whose reason contains this text (case-insensitive)."
        ),
        click.option("--to", "last", help="Last dead-letter ID (inclusive)."),
        click.option("--from", "first", help="First dead-letter ID (inclusive)."),
        click.option("--id", "ids", multiple=True, help="Only this dead-letter ID (repeat)."),
    ):
        wrapped = option(wrapped)
    return wrapped


def _dead_letter_key(stream: str, pipeline: str, dead_letter_stream: str | None) -> str:
    if dead_letter_stream:
        return dead_letter_stream
    names = stream_names(pipeline)
    if stream == "logs":
        key = names.logs
    elif stream == "metrics":
        key = names.metrics
    elif stream.endswith("-stream"):
        key = stream if stream.startswith(names.prefix) else f"{names.prefix}{stream}"
    else:
        key = names.named(stream)
    return StreamNames.dead_letter(key)


def _selection(
    ids: tuple[str, ...],
    first: str | None,
    last: str | None,
    reason: str | None,
    reason_regex: str | None,
) -> DeadLetterFilter:
    bad = [i for i in ids if not _ENTRY_ID.fullmatch(i)]
    if bad:
        raise click.BadParameter(
            f"not a stream entry ID (like 1704542400000-0): {', '.join(bad)}", param_hint="--id"
        )
    for name, value in (("--from", first), ("--to", last)):
        if value is not None and not _RANGE_ID.fullmatch(value):
            raise click.BadParameter(
                f"{value!r} is not a stream entry ID (1704542400000-0, or 1704542400000)",
                param_hint=name,
            )
    try:
        pattern = re.compile(reason_regex) if reason_regex is not None else None
    except re.error as exc:
        raise click.BadParameter(
            f"not a regular expression: {exc}", param_hint="--reason-regex"
        ) from None
    return DeadLetterFilter(
        ids=ids, first=first or "-", last=last or "+", reason=reason, reason_regex=pattern
    )


def _client(redis_url: str | SecretStr | None) -> redis.Redis:
    return sync_client(redis_url or os.environ.get("REDIS_URL") or _DEFAULT_REDIS)


@click.group()
def dlq() -> None:
    """Dead-letter streams: entries that could not be processed, with their reasons."""


@dlq.command("list")
@_options
@_filters
@click.option("--start", hidden=True, help="Old name of --from.")
@click.option("--count", default=100, show_default=True, help="Most entries to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(
    redis_url: str | None,
    stream: str,
    pipeline: str,
    dead_letter_stream: str | None,
    selection: DeadLetterFilter,
    start: str | None,
    count: int,
    as_json: bool,
) -> None:
    """Show dead letters, oldest first: ID, source, attempts, when, reason, payload."""
    key = _dead_letter_key(stream, pipeline, dead_letter_stream)
    if start is not None:
        selection = dataclasses.replace(selection, first=start)
    client = _client(redis_url)
    shown = 0
    try:
        total = int(client.xlen(key))
        for letter in iter_dead_letters(client, key, selection):
            if shown >= count:
                break
            click.echo(_json_line(letter) if as_json else _text_line(letter))
            shown += 1
    except RedisError as exc:
        raise click.ClickException(f"Redis: {exc}") from exc
    finally:
        client.close()
    if not as_json:
        click.echo(f"{shown} of {total} dead letter(s) in {key}", err=True)


@dlq.command("replay")
@_options
@_filters
@click.option(
    "--all", "replay_all", is_flag=True, help="Replay every matching dead letter there now."
)
@click.option(
    "--count", default=1000, show_default=True, help="Most letters to replay (without --all)."
)
@click.option("--dry-run", is_flag=True, help="List what would be replayed; change nothing.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="Letters per second.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Settings file: the receivers' backlog limit comes from its `receivers` section.",
)
@click.option(
    "--max-backlog",
    type=click.IntRange(min=1),
    help="Entries a source stream may hold (default: the receivers' backpressure.max_backlog).",
)
@click.option(
    "--backlog-wait",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait for a source stream at the backlog limit to drain before stopping.",
)
def replay(
    redis_url: str | None,
    stream: str,
    pipeline: str,
    dead_letter_stream: str | None,
    selection: DeadLetterFilter,
    replay_all: bool,
    count: int,
    dry_run: bool,
    rate: float | None,
    config_file: Path | None,
    max_backlog: int | None,
    backlog_wait: float,
) -> None:
    """Put dead letters back on their source stream (after fixing what made them fail).

    Give filters and/or --id, or --all; without --id or --all, the oldest --count letters
    that match. A replayed entry keeps the identity of the entry it first was, so nothing
    that had reached its sink is written twice.
    """
    key = _dead_letter_key(stream, pipeline, dead_letter_stream)
    limit = None if replay_all or selection.ids else count
    settings = ReceiverSettings.load(
        config_file, {"redis.url": redis_url, "backpressure.max_backlog": max_backlog}
    )
    client = _client(settings.redis.url)
    try:
        if dry_run:
            shown = 0
            for letter in iter_dead_letters(client, key, selection):
                if limit is not None and shown >= limit:
                    break
                click.echo(_text_line(letter))
                shown += 1
            click.echo(f"would replay {shown} dead letter(s) from {key}; nothing changed")
            return

        def waiting(source: str, backlog: int, max_entries: int) -> None:
            click.echo(
                f"{source} holds {backlog} entries (backlog limit {max_entries}): waiting up "
                f"to {backlog_wait:g}s for the workers to catch up",
                err=True,
            )

        report = replay_dead_letters(
            client,
            key,
            selection,
            count=limit,
            max_backlog=settings.backpressure.max_backlog,
            backlog_wait=backlog_wait,
            rate=rate,
            on_wait=waiting,
        )
        left = int(client.xlen(key))
    except RedisError as exc:
        raise click.ClickException(f"Redis: {exc}") from exc
    finally:
        client.close()
    summary = f"replayed {len(report.replayed)} dead letter(s) from {key}; {left} left"
    if report.gone:
        summary += f"; {len(report.gone)} were gone already (replayed or purged meanwhile)"
    if report.unreplayable:
        summary += (
            f"; {len(report.unreplayable)} name no source stream and were left: "
            + ", ".join(i for i, _ in report.unreplayable[:5])
        )
    if report.stopped:
        raise click.ClickException(f"{summary}; stopped: {report.stopped}")
    click.echo(summary)


@dlq.command("purge")
@_options
@_filters
@click.option("--all", "purge_all", is_flag=True, help="Take every dead letter there now.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; change nothing.")
@click.option("--yes", is_flag=True, help="Really delete (without it, only list).")
def purge(
    redis_url: str | None,
    stream: str,
    pipeline: str,
    dead_letter_stream: str | None,
    selection: DeadLetterFilter,
    purge_all: bool,
    dry_run: bool,
    yes: bool,
) -> None:
    """Delete dead letters for good (those that can never succeed, or are not wanted).

    Needs a filter (--id, --from/--to, --reason, --reason-regex) or --all, and deletes only
    with --yes; without it, lists what it would delete and exits 1.
    """
    key = _dead_letter_key(stream, pipeline, dead_letter_stream)
    if not selection.narrowed and not purge_all:
        raise click.UsageError(
            "purge needs a filter (--id, --from/--to, --reason, --reason-regex) or --all"
        )
    client = _client(redis_url)
    try:
        if dry_run or not yes:
            matched = 0
            for letter in iter_dead_letters(client, key, selection):
                if matched < _PREVIEW:
                    click.echo(_text_line(letter))
                matched += 1
            if matched > _PREVIEW:
                click.echo(f"... and {matched - _PREVIEW} more")
            if dry_run:
                click.echo(f"would delete {matched} dead letter(s) from {key}; nothing changed")
                return
            click.echo(
                f"nothing deleted: add --yes to delete these {matched} dead letter(s) from {key}",
                err=True,
            )
            sys.exit(1)
        deleted = purge_dead_letters(client, key, selection)
        left = int(client.xlen(key))
    except RedisError as exc:
        raise click.ClickException(f"Redis: {exc}") from exc
    finally:
        client.close()
    click.echo(f"deleted {len(deleted)} dead letter(s) from {key}; {left} left")


def _text_line(letter: DeadLetter) -> str:
    when = datetime.fromtimestamp(letter.failed_at, UTC).isoformat(timespec="seconds")
    data = letter.data.decode("utf-8", errors="replace")
    if len(data) > 200:
        data = data[:197] + "..."
    origin = ""
    if (letter.origin_stream, letter.origin_id) != (letter.source_stream, letter.source_id):
        origin = f"  origin={letter.origin_stream}/{letter.origin_id}"
    return (
        f"{letter.id}  source={letter.source_stream}/{letter.source_id}{origin}  "
        f"attempts={letter.attempts}  failed_at={when}  worker={letter.worker}\n"
        f"    reason: {letter.reason}\n    data:   {data}"
    )


def _json_line(letter: DeadLetter) -> str:
    return orjson.dumps(
        {
            "id": letter.id,
            "source_stream": letter.source_stream,
            "source_id": letter.source_id,
            "origin_stream": letter.origin_stream,
            "origin_id": letter.origin_id,
            "attempts": letter.attempts,
            "failed_at": letter.failed_at,
            "worker": letter.worker,
            "reason": letter.reason,
            "data": letter.data.decode("utf-8", errors="replace"),
        }
    ).decode()
