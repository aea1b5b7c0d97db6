"""The log record: what a log entry on ``logs-stream`` holds.

A record needs ``timestamp``, ``service``, ``level`` and ``message``; any other top-level
field is kept as is (names starting with ``_`` are refused: Elasticsearch reserves them for
its metadata). On the stream the record is JSON with the timestamp in canonical RFC 3339 UTC
form and the level in canonical lower case (see :mod:`killkrill.schemas.levels`).

Two ways in, one set of rules:

* :func:`validate_log` - the fast path the receivers use: checks a decoded JSON object and
  returns the normalised ``dict`` (mutating its argument), raising
  :class:`~killkrill.errors.ValidationError` naming the field.
* :func:`is_canonical_log` - the workers' shortcut: true when a decoded object already is a
  valid record in canonical form (as the receivers write them), so :func:`validate_log`
  would accept it and change nothing.
* :class:`LogRecord` / :func:`parse_log_record` - the typed model the workers use.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from pydantic import ConfigDict, Field, field_validator

from killkrill.errors import LogParseError, ValidationError
from killkrill.schemas.levels import LEVELS, Level, normalise_level
from killkrill.schemas.limits import UNLIMITED, RecordLimits, TimeWindow, too_long
from killkrill.schemas.record import StreamRecord
from killkrill.schemas.timestamps import (
    is_canonical_timestamp,
    normalise_timestamp,
)

__all__ = [
    "LOG_REQUIRED_FIELDS",
    "LogRecord",
    "check_log_limits",
    "is_canonical_log",
    "parse_log_record",
    "validate_log",
]

LOG_REQUIRED_FIELDS = ("timestamp", "service", "level", "message")
_CANONICAL_LEVELS = frozenset(LEVELS)


def is_canonical_log(obj: object) -> bool:
    """Whether ``obj`` is a valid log record already in canonical form.

    True means :func:`validate_log` (without limits) accepts ``obj`` and leaves it as it is:
    a JSON object with a canonical UTC ``timestamp``, a canonical lower-case ``level``, a
    non-blank string ``service``, a string ``message`` and no field name that is empty or
    starts with ``_``. False means "not known to be": call :func:`validate_log`, which
    normalises or explains. Costs a fraction of :func:`validate_log`.
    """
    if type(obj) is not dict:
        return False
    level = obj.get("level")
    service = obj.get("service")
    if (
        type(level) is not str
        or level not in _CANONICAL_LEVELS
        or type(service) is not str
        or not service
        or service.isspace()  # with `not service`: the same as `not service.strip()`
        or type(obj.get("message")) is not str
        or not is_canonical_timestamp(obj.get("timestamp"))
    ):
        return False
    if len(obj) > 4:
        for key in obj:
            if not key or key[0] == "_":
                return False
    return True


def validate_log(
    obj: object, limits: RecordLimits = UNLIMITED, *, window: TimeWindow | None = None
) -> dict[str, Any]:
    """Check one decoded JSON value as a log record and return it normalised.

    ``obj`` (when a ``dict``) is modified in place: ``timestamp`` and ``level`` are replaced
    by their canonical forms. The record-size limit is checked by the caller after
    serialising (see :func:`killkrill.receivers.batch.build_batch`), not here. The timestamp
    must lie in ``window`` (default: ``limits.window()`` at the current time; pass one
    computed per batch to save the clock reads).
    """
    if not isinstance(obj, dict):
        raise ValidationError(f"a log record must be a JSON object, not {_kind(obj)}", field="")
    missing = [name for name in LOG_REQUIRED_FIELDS if name not in obj]
    if missing:
        raise ValidationError(
            f"missing required field{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}; every log record needs timestamp, service, level, message",
            field=missing[0],
        )
    try:
        obj["timestamp"] = normalise_timestamp(obj["timestamp"])
    except ValueError as exc:
        raise ValidationError(str(exc), field="timestamp") from None
    try:
        obj["level"] = normalise_level(obj["level"])
    except ValueError as exc:
        raise ValidationError(str(exc), field="level") from None
    service = obj["service"]
    if type(service) is not str:
        raise ValidationError(f"must be a string, not {_kind(service)}", field="service")
    if not service.strip():
        raise ValidationError("must not be empty; name the service that logged", field="service")
    message = obj["message"]
    if type(message) is not str:
        raise ValidationError(
            f"must be a string, not {_kind(message)}; put structured data in other fields",
            field="message",
        )
    if limits is not UNLIMITED or window is not None:
        check_log_limits(obj, limits, window=window)
    if len(obj) > 4:
        for key in obj:
            if not key or key[0] == "_":
                raise ValidationError(
                    "field names must be non-empty and must not start with '_' (reserved by "
                    "Elasticsearch); rename the field",
                    field=key,
                )
    return obj


def check_log_limits(
    record: dict[str, Any], limits: RecordLimits, *, window: TimeWindow | None = None
) -> None:
    """The limits part of :func:`validate_log`, for a record already in canonical form
    (string ``service`` and ``message``, canonical ``timestamp``), such as the syslog
    parser's: the time window (default ``limits.window()`` now), the lengths and the field
    count. Raises :class:`~killkrill.errors.ValidationError` naming the setting."""
    if window is None:
        window = limits.window()
    if window is not None:
        window.check(record["timestamp"])
    service: str = record["service"]
    message: str = record["message"]
    if limits.max_service_length is not None and len(service) > limits.max_service_length:
        raise too_long(len(service), limits.max_service_length, "max_service_length", "service")
    if limits.max_message_length is not None and len(message) > limits.max_message_length:
        raise too_long(
            len(message),
            limits.max_message_length,
            "max_message_length",
            "message",
            "; split the message or raise the limit",
        )
    if limits.max_fields is not None and len(record) > limits.max_fields:
        raise ValidationError(
            f"the record has {len(record)} top-level fields; the limit is {limits.max_fields} "
            "(limits.max_fields); nest related fields in an object",
            field="",
        )


class LogRecord(StreamRecord):
    """One log record. Extra fields are kept and serialised back unchanged."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "timestamp": "2024-01-06T12:00:00Z",
                    "service": "api",
                    "level": "info",
                    "message": "Request completed",
                    "request_id": "c0ffee",
                }
            ]
        },
    )

    timestamp: datetime = Field(
        description="When it happened: RFC 3339 / ISO 8601 (no offset means UTC) or epoch "
        "seconds/milliseconds/microseconds/nanoseconds (unit inferred from magnitude)."
    )
    service: str = Field(min_length=1, description="The service that logged the record.")
    level: Level = Field(
        description="trace, debug, info, warn, error or fatal; aliases (WARNING, err, "
        "CRITICAL, notice...) and any case are accepted and normalised."
    )
    message: str = Field(description="The log line.")

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: object) -> str:
        return normalise_level(value)


def parse_log_record(data: bytes | str) -> LogRecord:
    """Parse a stream entry's ``data`` into a :class:`LogRecord`.

    Raises :class:`~killkrill.errors.LogParseError` (with ``field`` and ``reason``) when the
    payload is not JSON or not a valid log record.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise LogParseError(f"not valid JSON: {exc}") from None
    try:
        validate_log(obj)
    except ValidationError as exc:
        raise LogParseError(exc.reason, field=exc.field) from None
    return LogRecord.model_validate(obj)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)
