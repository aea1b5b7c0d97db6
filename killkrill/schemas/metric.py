"""The metric sample: what a metric entry on ``metrics-stream`` holds.

``name`` follows the Prometheus rules (``[a-zA-Z_:][a-zA-Z0-9_:]*``), ``value`` is a finite
float, ``labels`` maps label names (``[a-zA-Z_][a-zA-Z0-9_]*``) to strings, ``timestamp``
is epoch seconds/milliseconds or RFC 3339 (default: when it was received) and ``type`` is
one of counter, gauge, histogram, summary, untyped (default untyped).

On the stream: ``{"name", "value", "labels", "timestamp", "type"}`` with the timestamp in
canonical RFC 3339 UTC form. :func:`validate_metric` is the receivers' fast path;
:class:`MetricSample` / :func:`parse_metric_sample` the workers' typed model.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from pydantic import ConfigDict, Field, field_validator

from killkrill.errors import ValidationError
from killkrill.schemas.limits import UNLIMITED, RecordLimits, TimeWindow, too_long
from killkrill.schemas.record import StreamRecord
from killkrill.schemas.timestamps import format_timestamp, normalise_timestamp

__all__ = [
    "LABEL_NAME_RE",
    "METRIC_NAME_RE",
    "NUL_IN_LABEL",
    "MetricSample",
    "MetricType",
    "parse_metric_sample",
    "validate_metric",
]

METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FIELDS = frozenset(("name", "value", "labels", "timestamp", "type"))
NUL_IN_LABEL = (
    "label values may not contain the NUL character (\\u0000): the aggregates store labels "
    "as PostgreSQL jsonb, which cannot hold it; remove it at the source"
)


class MetricType(StrEnum):
    """The Prometheus metric family types."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"
    UNTYPED = "untyped"


_TYPES = frozenset(t.value for t in MetricType)


def check_value(value: object) -> float:
    """Return ``value`` as a finite float or raise ``ValueError`` saying why not."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"must be a number, not {'null' if value is None else 'a boolean'}")
    if isinstance(value, int | float):
        x = float(value)
    elif isinstance(value, str):
        try:
            x = float(value)
        except ValueError:
            raise ValueError(f"'{value[:40]}' is not a number") from None
    else:
        raise ValueError(f"must be a number, not {type(value).__name__}")
    if not math.isfinite(x):
        raise ValueError(f"must be finite, not {x}; NaN and infinities cannot be aggregated")
    return x


def validate_metric(
    obj: object,
    limits: RecordLimits = UNLIMITED,
    *,
    now: str | None = None,
    window: TimeWindow | None = None,
) -> dict[str, Any]:
    """Check one decoded JSON value as a metric sample and return it normalised.

    ``obj`` (when a ``dict``) is modified in place. ``now`` is the canonical timestamp used
    when the sample has none (default: the current time). A timestamp the sample carries
    must lie in ``window`` (default: ``limits.window()`` at the current time).
    """
    if not isinstance(obj, dict):
        raise ValidationError("a metric sample must be a JSON object", field="")
    name = obj.get("name")
    if name is None:
        raise ValidationError(
            "missing required field name; every sample needs name and value", field="name"
        )
    if type(name) is not str or not METRIC_NAME_RE.fullmatch(name):
        raise ValidationError(
            f"{_show(name)} is not a valid Prometheus metric name; use letters, digits, '_' "
            "and ':' and do not start with a digit",
            field="name",
        )
    if limits.max_name_length is not None and len(name) > limits.max_name_length:
        raise too_long(len(name), limits.max_name_length, "max_name_length", "name")
    if "value" not in obj:
        raise ValidationError(
            "missing required field value; every sample needs name and value", field="value"
        )
    try:
        obj["value"] = check_value(obj["value"])
    except ValueError as exc:
        raise ValidationError(str(exc), field="value") from None
    labels = obj.get("labels")
    if labels is None:
        obj["labels"] = {}
    else:
        _check_labels(labels, limits)
    ts = obj.get("timestamp")
    if ts is None:
        obj["timestamp"] = now or format_timestamp(datetime.now(UTC))
    else:
        try:
            obj["timestamp"] = normalise_timestamp(ts)
        except ValueError as exc:
            raise ValidationError(str(exc), field="timestamp") from None
        if window is None and limits is not UNLIMITED:
            window = limits.window()
        if window is not None:
            window.check(obj["timestamp"])
    kind = obj.get("type")
    if kind is None:
        obj["type"] = "untyped"
    elif type(kind) is not str or kind.lower() not in _TYPES:
        raise ValidationError(
            f"{_show(kind)} is not a metric type; use counter, gauge, histogram, summary or "
            "untyped",
            field="type",
        )
    else:
        obj["type"] = kind.lower()
    if len(obj) > 5:
        extra = sorted(set(obj) - _FIELDS)
        raise ValidationError(
            f"unknown field{'s' if len(extra) > 1 else ''} {', '.join(extra)}; a sample has "
            "name, value, labels, timestamp, type (put dimensions in labels)",
            field=extra[0],
        )
    return obj


def _check_labels(labels: object, limits: RecordLimits) -> None:
    if not isinstance(labels, dict):
        raise ValidationError("must be an object of string to string", field="labels")
    if limits.max_labels is not None and len(labels) > limits.max_labels:
        raise ValidationError(
            f"{len(labels)} labels; the limit is {limits.max_labels} (limits.max_labels)",
            field="labels",
        )
    max_len = limits.max_label_value_length
    for key, val in labels.items():
        if not LABEL_NAME_RE.fullmatch(key):
            raise ValidationError(
                f"{_show(key)} is not a valid label name; use letters, digits and '_' and do "
                "not start with a digit",
                field=f"labels.{key}",
            )
        if type(val) is not str:
            raise ValidationError(
                f"label values must be strings, not {_kind(val)}; quote it",
                field=f"labels.{key}",
            )
        if max_len is not None and len(val) > max_len:
            raise too_long(len(val), max_len, "max_label_value_length", f"labels.{key}")
        if "\x00" in val:
            raise ValidationError(NUL_IN_LABEL, field=f"labels.{key}")


class MetricSample(StreamRecord):
    """One metric sample."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "http_request_duration_seconds",
                    "value": 0.125,
                    "labels": {"method": "GET", "endpoint": "/api/v1/users"},
                    "timestamp": 1704542400,
                    "type": "gauge",
                }
            ]
        },
    )

    name: str = Field(pattern=METRIC_NAME_RE.pattern, description="Prometheus metric name.")
    value: float = Field(description="A finite number; NaN and infinities are refused.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Label name (Prometheus rules) to string value."
    )
    timestamp: datetime = Field(
        default_factory=lambda: datetime.now(UTC),
        description="Epoch seconds or milliseconds, or RFC 3339; default: when received.",
    )
    type: MetricType = Field(default=MetricType.UNTYPED, description="The family's type.")

    @field_validator("value", mode="before")
    @classmethod
    def _value(cls, value: object) -> float:
        return check_value(value)

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not LABEL_NAME_RE.fullmatch(key):
                raise ValueError(f"{key!r} is not a valid label name")
            if "\x00" in val:
                raise ValueError(NUL_IN_LABEL)
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


def parse_metric_sample(data: bytes | str) -> MetricSample:
    """Parse a stream entry's ``data`` into a :class:`MetricSample`.

    Raises :class:`~killkrill.errors.ValidationError` (with ``field`` and ``reason``) when
    the payload is not JSON or not a valid sample.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON: {exc}") from None
    validate_metric(obj)
    return MetricSample.model_validate(obj)


def _show(value: object) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:60] + "...")
    return "null" if value is None else _kind(value)


def _kind(value: object) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", list: "an array"}.get(
        type(value), "an object" if isinstance(value, dict) else type(value).__name__
    )
