"""``killkrill dlq list|replay``: inspect and re-queue a stream's dead letters.

Generic over the source stream (default ``logs-stream``): the dead-letter stream is
``<stream>:dead-letter`` unless ``--dead-letter-stream`` names another. Replay appends each
entry's original ``data`` back onto its source stream and deletes the dead letter in the
same MULTI, so an entry is always in exactly one of the two places.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import click
import orjson
from redis.exceptions import RedisError

from killkrill.streams.connection import sync_client
from killkrill.streams.dead_letter import DeadLetter, list_dead_letters, replay_dead_letters
from killkrill.streams.names import StreamNames

__all__ = ["dlq"]

_DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
_ENTRY_ID = re.compile(r"[0-9]+-[0-9]+")


def _options(f: click.decorators.FC) -> click.decorators.FC:
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


def _dead_letter_key(stream: str, pipeline: str, dead_letter_stream: str | None) -> str:
    if dead_letter_stream:
        return dead_letter_stream
    names = StreamNames.for_pipeline(pipeline)
    if stream == "logs":
        key = names.logs
    elif stream == "metrics":
        key = names.metrics
    elif stream.endswith("-stream"):
        key = stream if stream.startswith(names.prefix) else f"{names.prefix}{stream}"
    else:
        key = names.named(stream)
    return StreamNames.dead_letter(key)


@click.group()
def dlq() -> None:
    """Dead-letter streams: entries that could not be processed, with their reasons."""


@dlq.command("list")
@_options
@click.option("--count", default=100, show_default=True, help="Most entries to show.")
@click.option("--start", default="-", show_default=True, help="First dead-letter ID to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(
    redis_url: str | None,
    stream: str,
    pipeline: str,
    dead_letter_stream: str | None,
    count: int,
    start: str,
    as_json: bool,
) -> None:
    """Show dead letters, oldest first: ID, source, attempts, when, reason, payload."""
    key = _dead_letter_key(stream, pipeline, dead_letter_stream)
    client = sync_client(redis_url or os.environ.get("REDIS_URL") or _DEFAULT_REDIS)
    try:
        total = int(client.xlen(key))
        letters = list_dead_letters(client, key, count=count, start=start)
    except RedisError as exc:
        raise click.ClickException(f"Redis: {exc}") from exc
    finally:
        client.close()
    for letter in letters:
        click.echo(_json_line(letter) if as_json else _text_line(letter))
    if not as_json:
        click.echo(f"{len(letters)} of {total} dead letter(s) in {key}", err=True)


@dlq.command("replay")
@_options
@click.option("--id", "ids", multiple=True, help="Replay only this dead-letter ID (repeatable).")
@click.option(
    "--all", "replay_all", is_flag=True, help="Replay every dead letter there now (in chunks)."
)
@click.option("--count", default=1000, show_default=True, help="Most entries per chunk/run.")
def replay(
    redis_url: str | None,
    stream: str,
    pipeline: str,
    dead_letter_stream: str | None,
    ids: tuple[str, ...],
    replay_all: bool,
    count: int,
) -> None:
    """Put dead letters back on their source stream (after fixing what made them fail).

    Give --id for chosen entries, or --all; without either, the oldest --count entries.
    """
    key = _dead_letter_key(stream, pipeline, dead_letter_stream)
    bad = [i for i in ids if not _ENTRY_ID.fullmatch(i)]
    if bad:
        raise click.BadParameter(f"not a stream entry ID (like 1704542400000-0): {', '.join(bad)}")
    client = sync_client(redis_url or os.environ.get("REDIS_URL") or _DEFAULT_REDIS)
    done = 0
    try:
        if ids:
            done = len(replay_dead_letters(client, key, ids=list(ids)))
        else:
            # --all replays what is there now, not what a still-failing worker adds meanwhile.
            todo = int(client.xlen(key)) if replay_all else count
            while done < todo:
                batch = replay_dead_letters(client, key, count=min(count, todo - done))
                if not batch:
                    break
                done += len(batch)
        left = int(client.xlen(key))
    except RedisError as exc:
        raise click.ClickException(f"Redis: {exc} (replayed {done} before the error)") from exc
    finally:
        client.close()
    click.echo(f"replayed {done} dead letter(s) from {key}; {left} left")


def _text_line(letter: DeadLetter) -> str:
    when = datetime.fromtimestamp(letter.failed_at, UTC).isoformat(timespec="seconds")
    data = letter.data.decode("utf-8", errors="replace")
    if len(data) > 200:
        data = data[:197] + "..."
    return (
        f"{letter.id}  source={letter.source_stream}/{letter.source_id}  "
        f"attempts={letter.attempts}  failed_at={when}  worker={letter.worker}\n"
        f"    reason: {letter.reason}\n    data:   {data}"
    )


def _json_line(letter: DeadLetter) -> str:
    return orjson.dumps(
        {
            "id": letter.id,
            "source_stream": letter.source_stream,
            "source_id": letter.source_id,
            "attempts": letter.attempts,
            "failed_at": letter.failed_at,
            "worker": letter.worker,
            "reason": letter.reason,
            "data": letter.data.decode("utf-8", errors="replace"),
        }
    ).decode()
