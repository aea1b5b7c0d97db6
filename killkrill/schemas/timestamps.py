"""Timestamps: parse what shippers send, write one canonical form.

Accepted on input:

* RFC 3339 / ISO 8601 strings (``2024-01-06T12:00:00Z``, ``2024-01-06T14:00:00.5+02:00``,
  ``2024-01-06 12:00:00``); a string without an offset is taken as UTC; fractions finer than
  a microsecond are truncated.
* Epoch numbers (or numeric strings) in seconds, milliseconds, microseconds or nanoseconds.
  The unit is inferred from the magnitude: below 1e11 seconds, below 1e14 milliseconds,
  below 1e17 microseconds, otherwise nanoseconds.

Written: RFC 3339 in UTC with microseconds and a ``Z`` (``2024-01-06T12:00:00.000000Z``),
which Elasticsearch's ``strict_date_optional_time`` reads and which sorts as text.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

__all__ = [
    "MAX_TIMESTAMP",
    "MIN_TIMESTAMP",
    "format_timestamp",
    "is_canonical_timestamp",
    "normalise_timestamp",
    "parse_timestamp",
]

MIN_TIMESTAMP = datetime(1970, 1, 1, tzinfo=UTC)
"""Earliest accepted instant: the Unix epoch. Older dates are almost always a unit mistake."""

MAX_TIMESTAMP = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
"""Latest accepted instant (the end of year 9999, the limit of RFC 3339)."""

_EPOCH = MIN_TIMESTAMP
_HINT = "send RFC 3339 (e.g. 2024-01-06T12:00:00Z) or epoch seconds/milliseconds"


def parse_timestamp(value: object) -> datetime:
    """Return ``value`` as an aware UTC ``datetime``.

    Raises ``ValueError`` with a message saying what was wrong and what to send instead;
    ``bool`` is refused (it is an ``int`` in Python but never a timestamp in JSON).
    """
    if isinstance(value, datetime):
        dt = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return dt.astimezone(UTC)
    if isinstance(value, bool) or value is None:
        raise ValueError(f"must be a string or a number, not {_json_type(value)}; {_HINT}")
    if isinstance(value, int):
        return _from_epoch_int(value)
    if isinstance(value, float):
        return _from_epoch(value)
    if isinstance(value, str):
        return _from_string(value)
    raise ValueError(f"must be a string or a number, not {_json_type(value)}; {_HINT}")


def format_timestamp(dt: datetime) -> str:
    """RFC 3339 in UTC with microseconds and ``Z``: ``2024-01-06T12:00:00.000000Z``."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    # %-formatting: the cheapest way measured (f-string format specs, isoformat), per record.
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ" % (  # noqa: UP031
        dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, dt.microsecond
    )  # fmt: skip


def is_canonical_timestamp(value: object) -> bool:
    """Whether ``value`` is already a valid timestamp in the canonical text form, so
    :func:`normalise_timestamp` returns it unchanged.

    The canonical form is ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in ASCII digits, a real instant.
    Runs once per log entry in the worker: the separators are checked by position, and
    ``datetime.fromisoformat`` (which reads fixed-width ASCII digits between them) checks
    the digits and the calendar, faster than a regular expression.
    """
    if (
        type(value) is not str
        or len(value) != 27
        or value[26] != "Z"
        or value[19] != "."
        or value[10] != "T"
        or value[4] != "-"
        or value[7] != "-"
        or value[13] != ":"
        or value[16] != ":"
        or not value.isascii()
        or not value[20:26].isdigit()
    ):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def normalise_timestamp(value: object) -> str:
    """Parse ``value`` and return it in the canonical text form (fast when it already is)."""
    if is_canonical_timestamp(value):
        return value  # type: ignore[return-value]  # a str: checked by is_canonical_timestamp
    if type(value) is str and len(value) == 32 and value.endswith("+00:00"):
        # The canonical form with its UTC offset written out, as senders on UTC clocks write
        # RFC 3339 (rsyslog, loggen): no parse and format needed.
        candidate = value[:26] + "Z"
        if is_canonical_timestamp(candidate):
            return candidate
    return format_timestamp(parse_timestamp(value))


def _from_epoch(x: float) -> datetime:
    if not math.isfinite(x):
        raise ValueError(f"must be a finite number, not {x}; {_HINT}")
    if x < 0:
        raise ValueError(f"epoch {x:g} is before 1970-01-01; {_HINT}")
    magnitude = abs(x)
    if magnitude < 1e11:
        seconds = x
    elif magnitude < 1e14:
        seconds = x / 1e3
    elif magnitude < 1e17:
        seconds = x / 1e6
    else:
        seconds = x / 1e9
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError as exc:
        raise ValueError(f"epoch {x:g} is out of range; {_HINT}") from exc


def _from_epoch_int(x: int) -> datetime:
    """Integers are converted exactly (a float would round nanoseconds)."""
    if x < 0:
        raise ValueError(f"epoch {x} is before 1970-01-01; {_HINT}")
    if x < 10**11:
        micros = x * 1_000_000
    elif x < 10**14:
        micros = x * 1_000
    elif x < 10**17:
        micros = x
    else:
        micros = x // 1_000
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise ValueError(f"epoch {x} is out of range; {_HINT}") from None


def _from_string(text: str) -> datetime:
    s = text.strip()
    if not s:
        raise ValueError(f"must not be empty; {_HINT}")
    if len(s) > 64:
        raise ValueError(f"'{s[:40]}...' is not an RFC 3339 timestamp; {_HINT}")
    # A number has neither a time separator nor a colon: the common RFC 3339 text skips
    # the (raising, so slow) float() attempt.
    if s[0].isdigit() and "T" not in s and ":" not in s and _looks_numeric(s):
        return _from_epoch_int(int(s)) if s.isdigit() else _from_epoch(float(s))
    try:  # Python 3.11's reads any number of fraction digits, truncating past 6
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"'{s}' is not an RFC 3339 timestamp; {_HINT}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt = dt.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"'{s}' is out of range; {_HINT}") from None
    if dt < MIN_TIMESTAMP:
        raise ValueError(f"'{s}' is before 1970-01-01; {_HINT}")
    return dt


def _looks_numeric(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
