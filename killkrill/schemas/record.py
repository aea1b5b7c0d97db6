"""What every record carried on a stream shares: its timestamp and its stream encoding."""

from __future__ import annotations

from datetime import datetime

import orjson
from pydantic import BaseModel, field_serializer, field_validator

from killkrill.schemas.timestamps import format_timestamp, parse_timestamp

__all__ = ["StreamRecord"]


class StreamRecord(BaseModel):
    """Base of :class:`~killkrill.schemas.LogRecord` and
    :class:`~killkrill.schemas.MetricSample`: ``timestamp`` accepts RFC 3339 / ISO 8601 or
    epoch forms and is written back in the canonical UTC form; :meth:`to_json` gives the
    bytes stored in a stream entry's ``data`` field. Each subclass declares ``timestamp``
    itself (its own default and description, in its own field order)."""

    @field_validator("timestamp", mode="before", check_fields=False)
    @classmethod
    def _timestamp(cls, value: object) -> datetime:
        return parse_timestamp(value)

    @field_serializer("timestamp", check_fields=False)
    def _dump_timestamp(self, value: datetime) -> str:
        return format_timestamp(value)

    def to_json(self) -> bytes:
        """The record as it is stored on the stream."""
        return orjson.dumps(self.model_dump(mode="json"))
