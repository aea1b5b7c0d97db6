"""Putting dead letters back on their source streams, and deleting them: ``killkrill dlq``.

Replay appends a letter's original ``data`` (and schema version) to its source stream with
the identity of the entry it first was (``origin_stream``/``origin_id``: the letter's own
origin if it was itself a replay, else its ``source_stream``/``source_id``), and deletes the
letter, in one server-side script per chunk: a letter is deleted and re-added together or
not at all, and a letter already gone (replayed or purged by someone else meanwhile) is not
added twice. The workers key their idempotent writes by that identity
(:attr:`~killkrill.streams.consumer.Entry.identity`), so replaying an entry that had reached
its sink after all (a client timeout after Elasticsearch accepted it) writes nothing twice.

Replay honours the receivers' backpressure: a letter is added only while its source stream
holds fewer than ``max_backlog`` entries (checked in the same script); past it, replay
waits up to ``backlog_wait`` seconds for the workers to catch up, then stops and says so.
``rate`` caps the letters replayed per second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import redis

from killkrill.streams.dead_letter import DeadLetter, DeadLetterFilter, iter_dead_letters
from killkrill.streams.names import (
    DATA_FIELD,
    ORIGIN_ID_FIELD,
    ORIGIN_STREAM_FIELD,
    SCHEMA_VERSION,
    VERSION_FIELD,
)

__all__ = ["Pacer", "ReplayReport", "purge_dead_letters", "replay_dead_letters"]

_CHUNK = 100
"""Letters per replay script call (without a rate limit)."""
_BACKLOG_POLL = 0.2
"""Seconds between two looks at a source stream's backlog while waiting for it to drop."""

# KEYS[1] the dead-letter stream, KEYS[2] the source stream. ARGV[1] the source's backlog
# limit (-1: none), then per letter: its ID, the number n of field/value pairs, the n pairs.
# Returns {new IDs, one per letter handled ('' if the letter was gone), the backlog that
# stopped it or -1}. Letters after the one that met the limit are not handled.
_REPLAY = """
local limit = tonumber(ARGV[1])
local out = {}
local i = 2
while i <= #ARGV do
  if limit >= 0 then
    local backlog = redis.call('XLEN', KEYS[2])
    if backlog >= limit then return {out, backlog} end
  end
  local n = tonumber(ARGV[i + 1])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then
    out[#out + 1] = redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 2, i + 1 + 2 * n))
  else
    out[#out + 1] = ''
  end
  i = i + 2 + 2 * n
end
return {out, -1}
"""


@dataclass
class ReplayReport:
    """What one replay did."""

    replayed: list[tuple[str, str]] = field(default_factory=list)
    """``(dead-letter ID, new entry ID)`` of each letter put back."""
    gone: list[str] = field(default_factory=list)
    """Letters deleted by someone else between reading and replaying them (not added)."""
    unreplayable: list[tuple[str, str]] = field(default_factory=list)
    """``(dead-letter ID, why)`` of letters that name no source stream (left in place)."""
    stopped: str | None = None
    """Why the replay stopped before the end (a source stream at its backlog limit)."""


@dataclass
class Pacer:
    """Keeps a loop under ``rate`` items per second (None: no limit): :meth:`wait` before
    sending ``n`` more items sleeps until the items already sent are within the rate."""

    rate: float | None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], object] = time.sleep
    _start: float | None = None
    _sent: int = 0

    def chunk(self, default: int) -> int:
        """Items to send at once: ``default``, or about a tenth of a second's worth."""
        if self.rate is None:
            return default
        return max(1, min(default, math.ceil(self.rate / 10)))

    def wait(self) -> None:
        """Sleep until what was sent so far is within the rate."""
        if self.rate is None:
            return
        now = self.clock()
        if self._start is None:
            self._start = now
        due = self._start + self._sent / self.rate
        if due > now:
            self.sleep(due - now)

    def sent(self, n: int) -> None:
        """Count ``n`` items sent."""
        self._sent += n

    def restart(self) -> None:
        """Forget the past (after a pause: no burst to catch up)."""
        self._start, self._sent = None, 0


def _letter_args(letter: DeadLetter) -> list[Any]:
    version = letter.fields.get(VERSION_FIELD.encode(), SCHEMA_VERSION.encode())
    pairs: list[Any] = [DATA_FIELD, letter.data, VERSION_FIELD, version]
    if letter.origin_id:
        pairs += [ORIGIN_STREAM_FIELD, letter.origin_stream, ORIGIN_ID_FIELD, letter.origin_id]
    return [letter.id, len(pairs) // 2, *pairs]


def _chunks(letters: Iterable[DeadLetter], size: int) -> Iterator[list[DeadLetter]]:
    """Consecutive letters of one source stream, at most ``size`` at a time."""
    chunk: list[DeadLetter] = []
    for letter in letters:
        if chunk and (len(chunk) >= size or letter.source_stream != chunk[0].source_stream):
            yield chunk
            chunk = []
        chunk.append(letter)
    if chunk:
        yield chunk


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def replay_dead_letters(
    client: redis.Redis,
    dead_letter_stream: str,
    selection: DeadLetterFilter | None = None,
    *,
    count: int | None = 1000,
    max_backlog: int | None = None,
    backlog_wait: float = 0.0,
    rate: float | None = None,
    on_wait: Callable[[str, int, int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
) -> ReplayReport:
    """Put the letters ``selection`` takes (at most ``count``; None: all of them, as they
    are now) back on their source streams, oldest first; see the module doc.

    With ``max_backlog``, a letter is added only while its source stream holds fewer
    entries; at the limit, waits up to ``backlog_wait`` seconds (``on_wait(stream,
    backlog, limit)`` is told when a wait starts), then stops with :attr:`ReplayReport.stopped`
    set. ``rate`` caps letters per second. Raises redis errors as they come; what was
    replayed before stays replayed.
    """
    report = ReplayReport()
    letters: Iterable[DeadLetter] = iter_dead_letters(client, dead_letter_stream, selection)
    if count is not None:
        letters = islice(letters, count)
    pacer = Pacer(rate, clock, sleep)
    script = client.register_script(_REPLAY)
    limit = -1 if max_backlog is None else max_backlog
    for chunk in _chunks(letters, pacer.chunk(_CHUNK)):
        source = chunk[0].source_stream
        if not source:
            report.unreplayable.extend((letter.id, "no source_stream") for letter in chunk)
            continue
        todo, waiting_since = chunk, None
        while todo:
            pacer.wait()
            args: list[Any] = [limit]
            for letter in todo:
                args += _letter_args(letter)
            reply: Any = script(keys=[dead_letter_stream, source], args=args)
            new_ids, backlog = [_text(i) for i in reply[0]], int(reply[1])
            for letter, new_id in zip(todo, new_ids, strict=False):
                if new_id:
                    report.replayed.append((letter.id, new_id))
                else:
                    report.gone.append(letter.id)
            pacer.sent(len(new_ids))
            todo = todo[len(new_ids) :]
            if not todo:
                break
            now = clock()
            if waiting_since is None:
                waiting_since = now
                if on_wait is not None:
                    on_wait(source, backlog, limit)
            if now - waiting_since >= backlog_wait:
                report.stopped = (
                    f"source stream {source} holds {backlog} entries, at the receivers' "
                    f"backlog limit ({limit})"
                    + (f", after waiting {backlog_wait:g}s" if backlog_wait else "")
                    + "; let the workers catch up, then replay again"
                )
                return report
            sleep(min(_BACKLOG_POLL, max(0.0, waiting_since + backlog_wait - now)))
            pacer.restart()
    return report


def purge_dead_letters(
    client: redis.Redis,
    dead_letter_stream: str,
    selection: DeadLetterFilter | None = None,
    *,
    count: int | None = None,
) -> list[str]:
    """Delete the letters ``selection`` takes (at most ``count``; None: all, as they are
    now); return the IDs deleted (a letter replayed or purged by someone else meanwhile is
    not among them)."""
    letters: Iterable[DeadLetter] = iter_dead_letters(client, dead_letter_stream, selection)
    if count is not None:
        letters = islice(letters, count)
    deleted: list[str] = []
    batch: list[str] = []

    def flush() -> None:
        with client.pipeline(transaction=False) as pipe:
            for entry_id in batch:
                pipe.xdel(dead_letter_stream, entry_id)
            replies: Any = pipe.execute()
        deleted.extend(i for i, n in zip(batch, replies, strict=True) if int(n))
        batch.clear()

    for letter in letters:
        batch.append(letter.id)
        if len(batch) >= _CHUNK:
            flush()
    if batch:
        flush()
    return deleted
