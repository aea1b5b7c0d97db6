"""Reading and replaying a dead-letter stream (``<stream>:dead-letter``).

Replay appends each entry's original ``data`` (and schema version) back onto its source
stream and deletes it from the dead-letter stream in the same MULTI, so an entry is always in
exactly one of the two places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

from killkrill.streams.names import DATA_FIELD, SCHEMA_VERSION, VERSION_FIELD

__all__ = ["DeadLetter", "list_dead_letters", "replay_dead_letters"]


def _s(fields: dict[bytes, bytes], key: str, default: str = "") -> str:
    value = fields.get(key.encode())
    return value.decode(errors="replace") if value is not None else default


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered entry and why it failed."""

    id: str
    data: bytes
    reason: str
    source_stream: str
    source_id: str
    attempts: int
    failed_at: float
    worker: str
    fields: dict[bytes, bytes]

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
        return cls(
            id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            data=fields.get(DATA_FIELD.encode(), b""),
            reason=_s(fields, "reason"),
            source_stream=_s(fields, "source_stream"),
            source_id=_s(fields, "source_id"),
            attempts=int(_s(fields, "attempts", "0") or 0),
            failed_at=float(_s(fields, "failed_at", "0") or 0),
            worker=_s(fields, "worker"),
            fields=fields,
        )


def list_dead_letters(
    client: redis.Redis, dead_letter_stream: str, *, count: int = 100, start: str = "-"
) -> list[DeadLetter]:
    """Up to ``count`` dead letters, oldest first, from ``start`` (an entry ID, inclusive)."""
    rows: Any = client.xrange(dead_letter_stream, min=start, max="+", count=count)
    return [DeadLetter.from_entry(eid, fields) for eid, fields in rows]


def replay_dead_letters(
    client: redis.Redis,
    dead_letter_stream: str,
    *,
    ids: Sequence[str] | None = None,
    count: int = 1000,
) -> list[tuple[str, str]]:
    """Put dead letters back on their source streams; return ``(dead_letter_id, new_id)``.

    With ``ids`` only those entries are replayed; otherwise up to ``count``, oldest first.
    """
    if ids:
        letters: list[DeadLetter] = []
        for entry_id in ids:
            rows: Any = client.xrange(dead_letter_stream, min=entry_id, max=entry_id)
            letters.extend(DeadLetter.from_entry(eid, fields) for eid, fields in rows)
    else:
        letters = list_dead_letters(client, dead_letter_stream, count=count)
    replayed: list[tuple[str, str]] = []
    for letter in letters:
        version = letter.fields.get(VERSION_FIELD.encode(), SCHEMA_VERSION.encode())
        with client.pipeline(transaction=True) as pipe:
            pipe.xadd(letter.source_stream, {DATA_FIELD: letter.data, VERSION_FIELD: version})
            pipe.xdel(dead_letter_stream, letter.id)
            new_id, _ = pipe.execute()
        replayed.append((letter.id, new_id.decode() if isinstance(new_id, bytes) else new_id))
    return replayed
