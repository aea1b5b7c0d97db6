"""Limits applied while validating records (the receivers pass their configured ones).

Sizes bound what one record may cost; the time window bounds how far from the receiver's
clock a record may be dated, so a sender with a wrong clock cannot create far-future daily
indices or pin the newest metrics bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from killkrill.errors import ValidationError
from killkrill.schemas.timestamps import MAX_TIMESTAMP, MIN_TIMESTAMP, format_timestamp

__all__ = ["UNLIMITED", "RecordLimits", "TimeWindow", "too_long"]


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """Upper bounds on one record; ``None`` means unbounded.

    Lengths are in characters (Python ``str`` length), sizes in bytes of UTF-8 JSON. The
    fields are named like the receivers' ``limits`` settings, which build this one to one.
    """

    max_record_bytes: int | None = None
    """Size of the record serialised as JSON, in bytes."""
    max_message_length: int | None = None
    """Characters in a log record's ``message``."""
    max_service_length: int | None = None
    """Characters in a log record's ``service``."""
    max_fields: int | None = None
    """Top-level fields of a log record, the four required ones included."""
    max_name_length: int | None = None
    """Characters in a metric ``name``."""
    max_labels: int | None = None
    """Labels on one metric sample."""
    max_label_value_length: int | None = None
    """Characters in one label value."""
    max_future_seconds: float | None = None
    """How far after the validator's clock a record may be dated, in seconds."""
    max_past_seconds: float | None = None
    """How far before the validator's clock a record may be dated, in seconds."""

    def window(self, now: datetime | None = None) -> TimeWindow | None:
        """The timestamps accepted at ``now`` (default: the current time), or ``None`` when
        no time bound is set. Compute it once per batch and pass it to ``validate_*``."""
        if self.max_future_seconds is None and self.max_past_seconds is None:
            return None
        now = now or datetime.now(UTC)
        return TimeWindow(
            earliest=_shifted(now, -self.max_past_seconds if self.max_past_seconds else None),
            latest=_shifted(
                now, self.max_future_seconds if self.max_future_seconds is not None else None
            ),
            limits=self,
        )


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """The accepted timestamps, as canonical strings (which sort like the instants)."""

    earliest: str | None
    latest: str | None
    limits: RecordLimits

    def check(self, timestamp: str) -> None:
        """Raise :class:`ValidationError` (field ``timestamp``) for a canonical timestamp
        outside the window, naming the setting that bounds it."""
        if self.latest is not None and timestamp > self.latest:
            raise ValidationError(
                f"{timestamp} is more than {_duration(self.limits.max_future_seconds)} after "
                f"the receiver's clock (limits.max_future_seconds); fix the sender's clock, "
                "or raise the limit if such dates are meant",
                field="timestamp",
            )
        if self.earliest is not None and timestamp < self.earliest:
            raise ValidationError(
                f"{timestamp} is more than {_duration(self.limits.max_past_seconds)} before "
                f"the receiver's clock (limits.max_past_seconds); raise or clear the limit to "
                "backfill old records",
                field="timestamp",
            )


UNLIMITED = RecordLimits()
"""No limits: what workers use when re-reading records the receivers already checked (a
record accepted yesterday stays valid today)."""


def too_long(length: int, limit: int, setting: str, field: str, hint: str = "") -> ValidationError:
    """The error for a field of ``length`` characters over ``limit`` (``limits.<setting>``)."""
    return ValidationError(
        f"is {length} characters long; the limit is {limit} (limits.{setting}){hint}",
        field=field,
    )


def _shifted(now: datetime, seconds: float | None) -> str | None:
    """``now`` moved by ``seconds`` as a canonical string; ``None`` when unbounded or past
    the range of timestamps (every timestamp is then inside on that side)."""
    if seconds is None:
        return None
    try:
        moved = now + timedelta(seconds=seconds)
    except OverflowError:
        return None
    if moved > MAX_TIMESTAMP or moved < MIN_TIMESTAMP:
        return None
    return format_timestamp(moved)


def _duration(seconds: float | None) -> str:
    value = seconds or 0.0
    for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
        if value >= size and value % size == 0:
            count = int(value // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ({value:g} s)"
    return f"{value:g} s"
