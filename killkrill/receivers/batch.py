"""Turning a decoded request body into validated, serialised records (pure, no I/O).

A body is one JSON object, a JSON array of objects, or NDJSON (one object per line). Each
record is validated on its own: the valid ones become JSON payloads ready for the stream,
the others become :class:`RecordError` entries naming index, field and reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from killkrill.errors import ValidationError
from killkrill.receivers.errors import RecordError, RequestError

__all__ = ["Batch", "Item", "build_batch", "split_json_body"]

Validator = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Item:
    """One record as decoded from the body, or the reason it could not be decoded."""

    value: Any
    line: int | None = None
    error: str | None = None


@dataclass(slots=True)
class Batch:
    """The outcome of validating a body: payloads to append and per-record errors."""

    payloads: list[bytes] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.payloads) + len(self.errors)


def split_json_body(body: bytes, *, ndjson: bool, max_records: int) -> list[Item]:
    """Split ``body`` into records: a JSON object, an array of them, or NDJSON lines.

    With ``ndjson`` false a body that is not one JSON document but has several lines is
    read as NDJSON anyway (shippers often label NDJSON ``application/json``). Raises
    :class:`RequestError` (400) for a body that is not JSON at all, and (413) for more than
    ``max_records`` records.
    """
    if not body.strip():
        raise RequestError(
            400,
            "empty_body",
            "the request body is empty; send a JSON object, a JSON array of objects, or NDJSON",
        )
    if not ndjson:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            if b"\n" not in body.strip():
                raise _json_error(exc) from None
        else:
            if isinstance(doc, list):
                _check_count(len(doc), max_records)
                if not doc:
                    raise RequestError(
                        400, "empty_batch", "the JSON array is empty; send at least one record"
                    )
                return [Item(value) for value in doc]
            return [Item(doc)]
    return _split_lines(body, max_records)


def _split_lines(body: bytes, max_records: int) -> list[Item]:
    items: list[Item] = []
    for number, raw in enumerate(body.split(b"\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if len(items) >= max_records:
            _check_count(len(items) + 1, max_records)
        try:
            items.append(Item(orjson.loads(line), line=number))
        except orjson.JSONDecodeError as exc:
            items.append(Item(None, line=number, error=_describe_json_error(exc)))
    if not items:
        raise RequestError(400, "empty_body", "the body holds no records, only blank lines")
    return items


def build_batch(items: list[Item], validate: Validator, *, max_record_bytes: int) -> Batch:
    """Validate and serialise every item; invalid ones become errors, never exceptions."""
    batch = Batch()
    payloads = batch.payloads
    dumps = orjson.dumps
    for index, item in enumerate(items):
        if item.error is not None:
            batch.errors.append(RecordError(index, "", item.error, item.line))
            continue
        try:
            payload = dumps(validate(item.value))
        except ValidationError as exc:
            batch.errors.append(RecordError.from_exc(index, exc, item.line))
            continue
        except orjson.JSONEncodeError as exc:  # pragma: no cover - decoded JSON re-encodes
            batch.errors.append(RecordError(index, "", f"cannot be encoded: {exc}", item.line))
            continue
        if len(payload) > max_record_bytes:
            batch.errors.append(
                RecordError(
                    index,
                    "",
                    f"the record is {len(payload)} bytes as JSON; the limit is "
                    f"{max_record_bytes} (limits.max_record_bytes)",
                    item.line,
                )
            )
            continue
        payloads.append(payload)
    return batch


def _check_count(count: int, max_records: int) -> None:
    if count > max_records:
        raise RequestError(
            413,
            "too_many_records",
            f"the batch holds more than {max_records} records (http.max_batch_records); "
            "split it into smaller requests",
            limit="http.max_batch_records",
        )


def _json_error(exc: orjson.JSONDecodeError) -> RequestError:
    return RequestError(
        400, "invalid_json", "the body is not valid JSON: " + _describe_json_error(exc)
    )


def _describe_json_error(exc: orjson.JSONDecodeError) -> str:
    msg = str(exc)
    if "utf-8" in msg.lower() or "surrogates" in msg.lower():
        return f"it is not valid UTF-8 ({msg}); encode text as UTF-8"
    return f"{msg}; send a JSON object, a JSON array of objects, or one object per line"
