"""Size limits applied while validating records (the receivers pass their configured ones)."""

from __future__ import annotations

from dataclasses import dataclass

from killkrill.errors import ValidationError

__all__ = ["UNLIMITED", "RecordLimits", "too_long"]


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """Upper bounds on one record; ``None`` means unbounded.

    Lengths are in characters (Python ``str`` length), sizes in bytes of UTF-8 JSON.
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


UNLIMITED = RecordLimits()
"""No size limits: what workers use when re-reading records the receivers already checked."""


def too_long(length: int, limit: int, setting: str, field: str, hint: str = "") -> ValidationError:
    """The error for a field of ``length`` characters over ``limit`` (``limits.<setting>``)."""
    return ValidationError(
        f"is {length} characters long; the limit is {limit} (limits.{setting}){hint}",
        field=field,
    )
