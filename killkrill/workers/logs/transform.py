"""From a stream entry's payload to the Elasticsearch document: pure, no I/O.

Each record is parsed and checked with :func:`killkrill.schemas.validate_log` (the same rules
the receivers apply; a record already in canonical form, as the receivers write them, is
recognised by the cheaper :func:`killkrill.schemas.is_canonical_log` and left as it is;
unless fields are dropped, renamed or moved to ECS, its document is then its own bytes with
the added fields spliced in before the closing brace, not serialised again: the same JSON,
at less than half the transform's cost per record), then:

* ``@timestamp`` - the record's ``timestamp`` in canonical RFC 3339 UTC form
  (``2024-01-06T12:00:00.000000Z``); ``timestamp`` itself is kept, normalised the same way;
* ``level`` - normalised to trace, debug, info, warn, error or fatal;
* ``processed_at`` - when this worker handled it (UTC, same form; one value per batch);
* ``environment`` and ``version`` - from the settings, unless the record has its own;
* every other field of the record is kept, after the configured drops and renames.

The document goes to ``<index_prefix>-YYYY.MM.DD`` by the record's own UTC date, with
``_id`` = ``<pipeline>:<stream>:<entry id>`` of the entry's identity (its own, or for an
entry replayed from a dead-letter stream the first one it had), so a redelivered or
replayed entry overwrites its document.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from killkrill.config.workers import LogTransformSettings
from killkrill.errors import LogParseError, ValidationError
from killkrill.schemas import format_timestamp, is_canonical_log, validate_log

_ID_CHARS = "0123456789-"
"""A stream entry ID is made of these: nothing in it needs JSON escaping."""

_JSON_SPACE = b" \t\r\n"
"""Whitespace JSON allows after a value."""

_ADDED_BY_ENRICH = frozenset({"@timestamp", "processed_at"})
"""Fields :meth:`LogTransformer.enrich` always sets: a record holding one of its own goes
the long way (its value is replaced, not repeated)."""

__all__ = [
    "ECS_VERSION",
    "LogDocument",
    "LogTransformer",
    "action_line",
    "document_id",
    "ecs_document",
    "index_name",
]


@dataclass(slots=True)
class LogDocument:
    """One document ready for ``_bulk``: target index, ``_id``, the JSON source and the
    ``index`` action line announcing it (both without their newline). Read-only by
    convention (not frozen: one is built per entry, on the hot path)."""

    index: str
    id: str
    source: bytes
    """The document as UTF-8 JSON."""
    action: bytes
    """``{"index":{"_index":...,"_id":...}}`` for this document."""


def action_line(index: str, doc_id: str) -> bytes:
    """The ``_bulk`` ``index`` action for ``index`` and ``doc_id`` (JSON-escaped).

    ``index`` (not ``create``) so a redelivered entry overwrites the document it already
    wrote: the write is idempotent by ``_id``.
    """
    return b'{"index":{"_index":%b,"_id":%b}}' % (orjson.dumps(index), orjson.dumps(doc_id))


def index_name(prefix: str, timestamp: str) -> str:
    """``<prefix>-YYYY.MM.DD`` for a canonical UTC timestamp (``2024-01-06T...Z``)."""
    return f"{prefix}-{timestamp[0:4]}.{timestamp[5:7]}.{timestamp[8:10]}"


def document_id(pipeline: str, stream: str, entry_id: str) -> str:
    """The document ``_id``: where the record came from, so redelivery overwrites.

    The stream key is part of it so two streams of one pipeline never share IDs.
    """
    return f"{pipeline}:{stream}:{entry_id}"


class LogTransformer:
    """Turns a stream entry's ``data`` into a :class:`LogDocument`.

    ``clock`` returns the current time (for ``processed_at``); tests pass a fixed one.
    """

    def __init__(
        self,
        settings: LogTransformSettings,
        *,
        pipeline: str,
        stream: str,
        index_prefix: str,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.stream = stream
        self.index_prefix = index_prefix
        self._clock = clock
        self._drop = tuple(settings.drop_fields)
        self._rename = tuple(settings.rename_fields.items())
        self._fields = tuple(settings.fields.items())
        self._ecs = settings.ecs
        # Cached pieces, so a document costs no more JSON escaping than its own body:
        self._id_prefix = document_id(pipeline, stream, "")
        self._by_day: dict[str, tuple[str, bytes]] = {}
        """``YYYY-MM-DD`` -> (index, action line up to the entry ID)."""
        self._stamp: tuple[int, str] = (-1, "")
        self._splice = not (self._drop or self._rename or self._ecs)
        """Whether a canonical record's document is its own bytes plus the added fields
        (:meth:`_spliced`): nothing of it is dropped, renamed or moved."""
        self._added = tuple(
            (name, b',"%b":%b' % (name.encode(), orjson.dumps(value)))
            for name, value in (
                ("environment", settings.environment),
                ("version", settings.version),
                *self._fields,
            )
        )
        """``(name, ',"name":value')`` of each constant field a document gets unless its
        record has its own, in the order :meth:`enrich` adds them."""

    def enrich(self, record: dict[str, Any], processed_at: str) -> dict[str, Any]:
        """The document body for a validated record (``record`` is modified and returned)."""
        for name in self._drop:
            record.pop(name, None)
        for old, new in self._rename:
            if old in record:
                record[new] = record.pop(old)
        record["@timestamp"] = record["timestamp"]
        record["processed_at"] = processed_at
        if "environment" not in record:
            record["environment"] = self.settings.environment
        if "version" not in record:
            record["version"] = self.settings.version
        for name, value in self._fields:
            if name not in record:
                record[name] = value
        if self._ecs:
            return ecs_document(record)
        return record

    def processed_at(self) -> str:
        """The current time in canonical form, formatted at most once per millisecond."""
        if self._clock is None:
            now = time.time()
            key = int(now * 1000)
            if key != self._stamp[0]:
                self._stamp = (key, format_timestamp(datetime.fromtimestamp(now, UTC)))
            return self._stamp[1]
        clocked = self._clock()
        key = int(clocked.timestamp() * 1000)
        if key != self._stamp[0]:
            self._stamp = (key, format_timestamp(clocked))
        return self._stamp[1]

    def document(
        self, entry_id: str, data: bytes | str, *, stream: str | None = None
    ) -> LogDocument:
        """Parse, validate, enrich and serialise one entry's payload; ``stream`` and
        ``entry_id`` are the entry's identity (default stream: this transformer's).

        Raises :class:`LogParseError` naming the field and the reason.
        """
        [doc] = self.documents([(stream or self.stream, entry_id, data)])
        if isinstance(doc, LogParseError):
            raise doc
        return doc

    def documents(
        self, entries: Iterable[tuple[str, str, bytes | str]]
    ) -> list[LogDocument | LogParseError]:
        """:meth:`document` for each ``(stream, entry_id, data)``, in order; a payload that
        cannot be indexed gives its :class:`LogParseError` in its place instead of raising.

        ``stream`` and ``entry_id`` are the entry's identity
        (:attr:`~killkrill.streams.consumer.Entry.identity`): its own, or for a replayed
        entry the first one it had, so a replay overwrites the document an earlier delivery
        indexed instead of adding a second one.

        One ``processed_at`` for the whole batch. This is the per-entry hot path of the
        worker: one loop, names bound once, no call per entry but the parse and the check.
        """
        out: list[LogDocument | LogParseError] = []
        append = out.append
        loads, dumps, splice = orjson.loads, orjson.dumps, self._splice
        by_day, id_prefix, own_stream = self._by_day, self._id_prefix, self.stream
        processed_at = self.processed_at()
        for stream, entry_id, data in entries:
            if not data:
                append(LogParseError("the stream entry has no `data` field", field="data"))
                continue
            try:
                body = loads(data)
            except orjson.JSONDecodeError as exc:
                append(LogParseError(f"not valid JSON: {exc}"))
                continue
            canonical = is_canonical_log(body)
            if canonical and splice and _ADDED_BY_ENRICH.isdisjoint(body):
                timestamp = body["timestamp"]
                source = self._spliced(data, body, timestamp, processed_at)
            else:
                if not canonical:
                    try:
                        body = _validated(body)
                    except LogParseError as exc:
                        append(exc)
                        continue
                timestamp = self.enrich(body, processed_at)["@timestamp"]
                source = dumps(body)
            day = by_day.get(timestamp[:10]) or self._day(timestamp)
            if stream != own_stream:  # replayed from another stream: its own _id prefix
                doc_id = document_id(self.pipeline, stream, entry_id)
                action = action_line(day[0], doc_id)
            elif entry_id.strip(_ID_CHARS):  # not a plain stream ID: escape it properly
                doc_id = id_prefix + entry_id
                action = action_line(day[0], doc_id)
            else:
                doc_id = id_prefix + entry_id
                action = b'%b%b"}}' % (day[1], entry_id.encode())
            append(LogDocument(day[0], doc_id, source, action))
        return out

    def _spliced(
        self, data: bytes | str, record: dict[str, Any], timestamp: str, processed_at: str
    ) -> bytes:
        """The document of a canonical ``record`` parsed from ``data``, without serialising
        it again: ``data`` up to its closing brace, then the fields :meth:`enrich` would add
        (``@timestamp``, ``processed_at``, then each constant field the record lacks), in
        the same order, so it decodes to the same object. Both timestamps are canonical:
        nothing in them needs escaping."""
        raw = (data if isinstance(data, bytes) else data.encode()).rstrip(_JSON_SPACE)
        tail = b',"@timestamp":"%b","processed_at":"%b"' % (
            timestamp.encode(),
            processed_at.encode(),
        )
        for name, part in self._added:
            if name not in record:
                tail += part
        return raw[:-1] + tail + b"}"

    def _day(self, timestamp: str) -> tuple[str, bytes]:
        """The index and the action line's start for the day of ``timestamp`` (cached)."""
        if len(self._by_day) > 1000:
            self._by_day.clear()
        index = index_name(self.index_prefix, timestamp)
        start = action_line(index, self._id_prefix)
        cut = start.rindex(b'"}}')  # keep the opening quote of the _id, cut the rest
        day = self._by_day[timestamp[:10]] = (index, start[:cut])
        return day


ECS_VERSION = "8.11.0"
"""The Elastic Common Schema version :func:`ecs_document` writes."""

_ECS_MOVES = (
    ("level", "log", "level"),
    ("service", "service", "name"),
    ("environment", "service", "environment"),
    ("version", "service", "version"),
    ("processed_at", "event", "ingested"),
)


def ecs_document(record: dict[str, Any]) -> dict[str, Any]:
    """An enriched record in the Elastic Common Schema shape (``record`` is modified):
    ``level`` -> ``log.level``, ``service`` -> ``service.name``, ``environment`` /
    ``version`` -> ``service.environment`` / ``service.version``, ``processed_at`` ->
    ``event.ingested``, ``timestamp`` dropped (``@timestamp`` holds it), ``ecs.version``
    added. Other fields stay as they are; one named after an ECS object the moves fill in
    (``log``, ``event``, ``ecs``) that is not an object moves to ``labels.<name>``."""
    record.pop("timestamp", None)
    for name in ("log", "event", "ecs"):
        value = record.get(name)
        if value is not None and not isinstance(value, dict):
            record.setdefault("labels", {})[name] = record.pop(name)
    for old, group, leaf in _ECS_MOVES:
        if old in record:
            value = record.pop(old)
            record.setdefault(group, {})[leaf] = value
    record["ecs"] = {**record.get("ecs", {}), "version": ECS_VERSION}
    return record


def _validated(obj: object) -> dict[str, Any]:
    """:func:`validate_log` with its error as a :class:`LogParseError`."""
    try:
        return validate_log(obj)
    except ValidationError as exc:
        raise LogParseError(exc.reason, field=exc.field) from None
