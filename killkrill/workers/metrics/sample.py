"""A metric stream entry parsed into the compact form the aggregation needs.

Validation is the shared schema's (:func:`killkrill.schemas.validate_metric`): the same
rules the receivers apply, so an entry that was valid on the way in stays valid here, and
one written to the stream by something else is checked the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import orjson

from killkrill.errors import ValidationError
from killkrill.schemas import validate_metric
from killkrill.streams.consumer import Entry

__all__ = ["Sample", "parse_entry", "parse_sample"]


class Sample(NamedTuple):
    """One sample: ``timestamp`` in epoch seconds (float, UTC); ``labels`` as sorted pairs,
    so equal label sets compare and hash equal whatever order they were sent in."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...]
    timestamp: float
    type: str


def parse_sample(data: bytes | str) -> Sample:
    """Parse an entry's ``data`` (JSON) into a :class:`Sample`.

    Raises :class:`~killkrill.errors.ValidationError` naming the field and the reason:
    not JSON, missing ``name``/``value``, a name breaking Prometheus rules, a value that is
    not a finite number (NaN, infinities, text), bad labels or timestamp, unknown fields.
    """
    if not data:
        raise ValidationError("the entry has no data field (or it is empty)", field="data")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON: {exc}", field="data") from None
    sample = validate_metric(obj)
    labels = sample["labels"]
    return Sample(
        sample["name"],
        sample["value"],
        tuple(sorted(labels.items())) if labels else (),
        datetime.fromisoformat(sample["timestamp"]).timestamp(),
        sample["type"],
    )


def parse_entry(entry: Entry) -> Sample:
    """:func:`parse_sample` of a stream entry's ``data`` (the worker's ``parse`` hook)."""
    return parse_sample(entry.data)
