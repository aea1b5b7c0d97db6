"""A metric stream entry parsed into the compact form the aggregation needs.

Validation is the shared schema's (:func:`killkrill.schemas.validate_metric`): the same
rules the receivers apply, so an entry that was valid on the way in stays valid here, and
one written to the stream by something else is checked the same way.

Most entries were written by our receivers and are already canonical: a JSON object with
a valid name, a float value, string labels, the timestamp in the canonical RFC 3339 UTC
form (``2024-01-06T12:00:00.000000Z``) or epoch seconds, and a lower-case type. Those take a
fast path (:meth:`SampleParser.fast_sample`) that checks exactly the same rules with
remembered answers (names and label names seen before, the calendar second of a timestamp)
and never formats a timestamp to text only to parse it back. Those memos are bounded LRUs
of ``aggregation.parse_cache_size`` entries each, held by a :class:`SampleParser` (the
worker makes its own; :func:`parse_sample` uses a default one). Anything the fast path is
not sure about - a numeric string value, an upper-case type, an RFC 3339 string with an
offset, epoch milliseconds as a string, a missing field, anything invalid - goes through
the full validation, which gives the same result (or the error with its reason).
``tests/unit/workers/test_metrics_sample.py``
checks that both paths agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from math import isfinite
from typing import Any, NamedTuple

import orjson

from killkrill.config.workers import AggregationSettings
from killkrill.errors import ValidationError
from killkrill.schemas import validate_metric
from killkrill.schemas.metric import LABEL_NAME_RE, METRIC_NAME_RE
from killkrill.schemas.timestamps import parse_timestamp
from killkrill.streams.consumer import Entry
from killkrill.workers.lru import Lru

__all__ = ["Sample", "SampleParser", "parse_entry", "parse_sample"]


class Sample(NamedTuple):
    """One sample: ``timestamp`` in epoch seconds (float, UTC); ``labels`` as sorted pairs,
    so equal label sets compare and hash equal whatever order they were sent in."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...]
    timestamp: float
    type: str


def parse_sample(data: bytes | str) -> Sample:
    """Parse an entry's ``data`` (JSON) into a :class:`Sample` (the default
    :class:`SampleParser`).

    Raises :class:`~killkrill.errors.ValidationError` naming the field and the reason:
    not JSON, missing ``name``/``value``, a name breaking Prometheus rules, a value that is
    not a finite number (NaN, infinities, text), bad labels or timestamp, unknown fields.
    """
    return _DEFAULT.parse(data)


def parse_entry(entry: Entry) -> Sample:
    """:func:`parse_sample` of a stream entry's ``data``."""
    return _DEFAULT.parse(entry.data)


def _validated_sample(obj: object) -> Sample:
    """The full path: :func:`validate_metric`, then the canonical timestamp parsed."""
    sample = validate_metric(obj)
    labels = sample["labels"]
    return Sample(
        sample["name"],
        sample["value"],
        tuple(sorted(labels.items())) if labels else (),
        datetime.fromisoformat(sample["timestamp"]).timestamp(),
        sample["type"],
    )


# --- the fast path ------------------------------------------------------------------------

_FIELDS = frozenset(("name", "value", "labels", "timestamp", "type"))
_TYPES = frozenset(("counter", "gauge", "histogram", "summary", "untyped"))

_new_sample = tuple.__new__
"""``Sample(...)`` without the Python-level ``__new__`` of a named tuple."""


class SampleParser:
    """:func:`parse_sample` with memos of its own, each a bounded LRU of ``cache_size``
    entries (``aggregation.parse_cache_size``). One per worker; not thread-safe (the
    worker parses on its event loop)."""

    def __init__(self, cache_size: int = AggregationSettings().parse_cache_size) -> None:
        self.names: Lru[str, None] = Lru(cache_size)
        """Metric names that passed :data:`METRIC_NAME_RE`."""
        self.label_names: Lru[str, None] = Lru(cache_size)
        """Label names that passed :data:`LABEL_NAME_RE`."""
        self.seconds: Lru[str, int] = Lru(cache_size)
        """``YYYY-MM-DDTHH:MM:SS`` (a valid calendar second, UTC) -> epoch seconds."""
        # The memos' C methods, bound once: a hit is then one call (KeyError on a miss).
        self._name_hit = self.names.move_to_end
        self._label_hit = self.label_names.move_to_end
        self._second_hit = self.seconds.move_to_end
        self._second = self.seconds.__getitem__

    def parse(self, data: bytes | str) -> Sample:
        """See :func:`parse_sample`."""
        if not data:
            raise ValidationError("the entry has no data field (or it is empty)", field="data")
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValidationError(f"not valid JSON: {exc}", field="data") from None
        if type(obj) is dict:
            sample = self.fast_sample(obj)
            if sample is not None:
                return sample
        return _validated_sample(obj)

    def parse_entry(self, entry: Entry) -> Sample:
        """:meth:`parse` of a stream entry's ``data`` (the worker's ``parse`` hook)."""
        return self.parse(entry.data)

    def fast_sample(self, obj: dict[str, Any]) -> Sample | None:
        """The sample if ``obj`` is plainly valid and canonical, else None (see module doc).

        Returns exactly what :func:`_validated_sample` returns for the same object. Runs
        once per entry, so it is written for speed: no helper calls on the usual path (a
        memo hit is one C call, ``move_to_end``, which raises KeyError on a miss)."""
        if len(obj) == 5:  # what the receivers write: all five fields, nothing else
            try:
                name = obj["name"]
                value = obj["value"]
                labels = obj["labels"]
                ts = obj["timestamp"]
                kind = obj["type"]
            except KeyError:
                return None
        elif obj.keys() <= _FIELDS:
            name = obj.get("name")
            value = obj.get("value")
            labels = obj.get("labels")
            ts = obj.get("timestamp")
            kind = obj.get("type", "untyped")
        else:
            return None
        if type(name) is not str:
            return None
        try:
            self._name_hit(name)
        except KeyError:
            if not METRIC_NAME_RE.fullmatch(name):
                return None
            self.names.put(name, None)
        if type(value) is float:
            if not isfinite(value):
                return None
        elif type(value) is int:
            value = float(value)
        else:
            return None
        if type(labels) is dict:
            label_hit = self._label_hit
            for key, val in labels.items():
                if type(val) is not str or "\x00" in val:
                    return None
                try:
                    label_hit(key)
                except KeyError:
                    if not LABEL_NAME_RE.fullmatch(key):
                        return None
                    self.label_names.put(key, None)
            pairs: tuple[tuple[str, str], ...] = tuple(sorted(labels.items())) if labels else ()
        elif labels is None:
            pairs = ()
        else:
            return None
        if type(ts) is str and len(ts) == 27 and ts[26] == "Z" and ts[19] == ".":
            fraction = ts[20:26]
            prefix = ts[:19]
            try:
                self._second_hit(prefix)
                second: int | None = self._second(prefix)
            except KeyError:
                second = self._calendar_second(prefix)
            if second is None or not (fraction.isdigit() and fraction.isascii()):
                return None
            # What datetime.timestamp() computes: exact microseconds / 10**6, correctly rounded.
            epoch = (second * 1_000_000 + int(fraction)) / 1_000_000
        else:
            maybe = self._fast_timestamp(ts)
            if maybe is None:
                return None
            epoch = maybe
        if kind is None:
            kind = "untyped"
        elif type(kind) is not str or kind not in _TYPES:
            return None
        return _new_sample(Sample, (name, value, pairs, epoch, kind))

    def _fast_timestamp(self, value: object) -> float | None:
        """Epoch seconds of a canonical timestamp or an epoch number, else None (the inline
        copy in :meth:`fast_sample` takes canonical strings first).

        Equal to ``datetime.fromisoformat(normalise_timestamp(value)).timestamp()``: a
        canonical string is exact to the microsecond, and an epoch number is converted by
        the same :func:`parse_timestamp` the full path uses (which also checks its range)."""
        kind = type(value)
        if kind is str:
            text: str = value  # type: ignore[assignment]
            if len(text) != 27 or text[19] != "." or text[26] != "Z":
                return None
            fraction = text[20:26]
            if not (fraction.isascii() and fraction.isdigit()):
                return None
            second = self.seconds.get_recent(text[:19])
            if second is None:
                second = self._calendar_second(text[:19])
                if second is None:
                    return None
            # What datetime.timestamp() computes: exact microseconds / 10**6, correctly rounded.
            return (second * 1_000_000 + int(fraction)) / 1_000_000
        if kind is float or kind is int:
            try:
                return parse_timestamp(value).timestamp()
            except ValueError:
                return None
        return None

    def _calendar_second(self, prefix: str) -> int | None:
        """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS`` if it is a valid UTC calendar second
        (remembered)."""
        if not (
            prefix.isascii()
            and prefix[4] == "-"
            and prefix[7] == "-"
            and prefix[10] == "T"
            and prefix[13] == ":"
            and prefix[16] == ":"
            and (prefix[:4] + prefix[5:7] + prefix[8:10] + prefix[11:13]).isdigit()
            and (prefix[14:16] + prefix[17:19]).isdigit()
        ):
            return None
        try:
            dt = datetime.fromisoformat(prefix).replace(tzinfo=UTC)
        except ValueError:
            return None
        second = int(dt.timestamp())
        self.seconds.put(prefix, second)
        return second


_DEFAULT = SampleParser()
"""The parser of :func:`parse_sample` and :func:`parse_entry`."""


def _fast_sample(obj: dict[str, Any]) -> Sample | None:
    """:meth:`SampleParser.fast_sample` of the default parser."""
    return _DEFAULT.fast_sample(obj)
