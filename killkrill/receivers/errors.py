"""What the receivers answer when a request or a record is refused, or only partly written."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from killkrill.errors import ServiceUnavailable, ValidationError

__all__ = ["PartialAppend", "RecordError", "RequestError"]


class PartialAppend(ServiceUnavailable):
    """Raised when a request written in several appends (remote_write over
    ``http.max_batch_records``) failed after ``written`` of its ``total`` records were
    appended: those are durable, the rest may or may not be."""

    def __init__(self, message: str, *, written: int, total: int, delay: float = 1.0) -> None:
        super().__init__(message, delay=delay)
        self.written = written
        self.total = total


class RequestError(ValidationError):
    """The request as a whole is refused (bad body, limit, auth).

    ``status`` is the HTTP status to answer, ``code`` a stable machine-readable word
    (``invalid_json``, ``body_too_large`` ...) and the message says how to fix it.
    """

    def __init__(
        self,
        status: int,
        code: str,
        reason: str,
        *,
        field: str = "",
        limit: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason, field=field)
        self.status = status
        self.code = code
        self.limit = limit
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON error body: ``error`` (code), ``message`` and, when known, ``limit``."""
        out: dict[str, Any] = {"error": self.code, "message": self.reason}
        if self.field:
            out["field"] = self.field
        if self.limit is not None:
            out["limit"] = self.limit
        return out


@dataclass(frozen=True, slots=True)
class RecordError:
    """One refused record of a batch: where it was, which field, and why."""

    index: int
    """0-based position of the record in the batch."""
    field: str
    """Dotted path of the offending field; ``""`` for the record as a whole."""
    reason: str
    """What is wrong and how to fix it."""
    line: int | None = None
    """1-based line of the body, for line-based formats (NDJSON, Prometheus text)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "field": self.field, "reason": self.reason}
        if self.line is not None:
            out["line"] = self.line
        return out

    @classmethod
    def from_exc(cls, index: int, exc: ValidationError, line: int | None = None) -> RecordError:
        return cls(index=index, field=exc.field, reason=exc.reason, line=line)
