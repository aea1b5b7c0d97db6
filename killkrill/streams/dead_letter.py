"""Dead-letter streams (``<stream>:dead-letter``): their entries, moving entries in, reading.

A dead letter keeps the original entry's fields (``data`` byte for byte, ``v``, and for a
replayed entry its ``origin_stream``/``origin_id``) beside ``reason``, ``source_stream``,
``source_id``, ``group``, ``attempts``, ``failed_at`` and ``worker``.

:func:`move_to_dead_letters` is how a consumer group puts entries there: one server-side
script adds each letter and acknowledges and deletes its entry, atomically, and only while
the dead-letter stream holds fewer than its bound. An entry that does not fit stays pending
on its stream: a dead-letter stream is never trimmed, and past its bound the worker stops
(see :meth:`killkrill.streams.consumer.ConsumerGroup.dead_letter`).

Reading is by :class:`DeadLetterFilter` (IDs, an ID range, the reason); putting letters back
or deleting them is :mod:`killkrill.streams.replay`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis

from killkrill.streams.names import DATA_FIELD, origin_of

__all__ = [
    "DeadLetter",
    "DeadLetterFilter",
    "iter_dead_letters",
    "lowest_origin_ids",
    "move_to_dead_letters",
]

_PAGE = 500
"""Dead letters read per XRANGE."""


def _s(fields: Mapping[bytes, bytes], key: str, default: str = "") -> str:
    value = fields.get(key.encode())
    return value.decode(errors="replace") if value is not None else default


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


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
    origin_stream: str = ""
    """Where the record first entered the pipeline (for a letter of a replayed entry, the
    stream of the entry it replayed; otherwise ``source_stream``)."""
    origin_id: str = ""
    """The entry ID the record first had (otherwise ``source_id``): a replay carries it, so
    the sinks' idempotent writes key the replayed entry as that first one."""

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
        source_stream, source_id = _s(fields, "source_stream"), _s(fields, "source_id")
        origin_stream, origin_id = origin_of(fields, source_stream, source_id)
        return cls(
            id=_text(entry_id),
            data=fields.get(DATA_FIELD.encode(), b""),
            reason=_s(fields, "reason"),
            source_stream=source_stream,
            source_id=source_id,
            attempts=int(_s(fields, "attempts", "0") or 0),
            failed_at=float(_s(fields, "failed_at", "0") or 0),
            worker=_s(fields, "worker"),
            fields=fields,
            origin_stream=origin_stream,
            origin_id=origin_id,
        )


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a command takes: all the conditions given must hold.

    ``first``/``last`` bound the dead-letter IDs (inclusive; an ID may be given as its
    milliseconds alone, as Redis allows: ``first="1704542400000"`` starts at that ms).
    ``reason`` is a case-insensitive substring of the reason, ``reason_regex`` a regular
    expression searched in it, ``ids`` explicit dead-letter IDs.
    """

    ids: tuple[str, ...] = ()
    first: str = "-"
    last: str = "+"
    reason: str | None = None
    reason_regex: re.Pattern[str] | None = None
    _folded: str = field(default="", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_folded", (self.reason or "").casefold())

    @property
    def narrowed(self) -> bool:
        """True when some condition is given (not "every dead letter")."""
        return bool(
            self.ids
            or self.first != "-"
            or self.last != "+"
            or self.reason
            or self.reason_regex is not None
        )

    def matches(self, letter: DeadLetter) -> bool:
        """Whether ``letter`` passes the reason conditions (the ID ones are applied by the
        range read)."""
        if self._folded and self._folded not in letter.reason.casefold():
            return False
        return self.reason_regex is None or self.reason_regex.search(letter.reason) is not None


def iter_dead_letters(
    client: redis.Redis, dead_letter_stream: str, selection: DeadLetterFilter | None = None
) -> Iterator[DeadLetter]:
    """The dead letters ``selection`` takes, oldest first, as they are now: letters added
    after the call (a worker still failing) are not part of it, so a replay or purge of
    "everything" ends."""
    sel = selection or DeadLetterFilter()
    if sel.ids:
        for entry_id in sel.ids:
            rows: Any = client.xrange(dead_letter_stream, min=entry_id, max=entry_id)
            for eid, fields in rows:
                letter = DeadLetter.from_entry(eid, fields)
                if sel.matches(letter) and _in_range(letter.id, sel):
                    yield letter
        return
    last = sel.last
    if last == "+":
        newest: Any = client.xrevrange(dead_letter_stream, max="+", min="-", count=1)
        if not newest:
            return
        last = _text(newest[0][0])
    start = sel.first
    while True:
        rows = client.xrange(dead_letter_stream, min=start, max=last, count=_PAGE)
        for eid, fields in rows:
            letter = DeadLetter.from_entry(eid, fields)
            if sel.matches(letter):
                yield letter
        if len(rows) < _PAGE:
            return
        start = "(" + _text(rows[-1][0])


def _id_key(entry_id: str, *, upper: bool) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq) if seq else (2**64 - 1 if upper else 0)


def _in_range(entry_id: str, sel: DeadLetterFilter) -> bool:
    key = _id_key(entry_id, upper=False)
    if sel.first != "-" and key < _id_key(sel.first, upper=False):
        return False
    return sel.last == "+" or key <= _id_key(sel.last, upper=True)


# KEYS[1] the stream, KEYS[2] its dead-letter stream. ARGV[1] the bound (-1: none), ARGV[2]
# the group, then per entry: its ID, the number n of field/value pairs, the n pairs. Moves
# the entries in order while the dead-letter stream holds fewer than the bound; returns
# how many it moved (the rest are left as they were: pending).
_MOVE = """
local bound = tonumber(ARGV[1])
local moved = 0
local i = 3
while i <= #ARGV do
  if bound >= 0 and redis.call('XLEN', KEYS[2]) >= bound then break end
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 2, i + 1 + 2 * n))
  redis.call('XACK', KEYS[1], ARGV[2], id)
  redis.call('XDEL', KEYS[1], id)
  moved = moved + 1
  i = i + 2 + 2 * n
end
return moved
"""


async def move_to_dead_letters(
    client: aioredis.Redis,
    stream: str,
    group: str,
    dead_letter_stream: str,
    letters: Sequence[tuple[str, Mapping[bytes, bytes]]],
    *,
    bound: int | None,
) -> int:
    """Add each ``(entry_id, letter_fields)`` to ``dead_letter_stream`` and acknowledge and
    delete the entry on ``stream``, in order, atomically, while the dead-letter stream
    holds fewer than ``bound`` entries (None: no bound). Returns how many were moved; the
    others are untouched (still pending). Raises redis errors as they come."""
    args: list[Any] = [-1 if bound is None else bound, group]
    for entry_id, fields in letters:
        args += [entry_id, len(fields)]
        for key, value in fields.items():
            args += [key, value]
    script = client.register_script(_MOVE)
    moved: Any = await script(keys=[stream, dead_letter_stream], args=args)
    return int(moved)


def _id_tuple(entry_id: str) -> tuple[int, int] | None:
    ms, sep, seq = entry_id.partition("-")
    if not (sep and ms.isdigit() and seq.isdigit()):
        return None
    return int(ms), int(seq)


async def lowest_origin_ids(
    client: aioredis.Redis, dead_letter_stream: str
) -> dict[str, tuple[int, int]]:
    """For each origin stream of the letters in ``dead_letter_stream``, the lowest origin
    entry ID as ``(ms, seq)``: a replay brings those identities back, so the exactly-once
    ledger must keep them. Reads the whole stream (it is bounded)."""
    lowest: dict[str, tuple[int, int]] = {}
    start = "-"
    while True:
        rows: Any = await client.xrange(dead_letter_stream, min=start, max="+", count=_PAGE)
        for eid, fields in rows:
            letter = DeadLetter.from_entry(eid, fields)
            key = _id_tuple(letter.origin_id)
            if key is not None and (
                letter.origin_stream not in lowest or key < lowest[letter.origin_stream]
            ):
                lowest[letter.origin_stream] = key
        if len(rows) < _PAGE:
            return lowest
        start = "(" + _text(rows[-1][0])
