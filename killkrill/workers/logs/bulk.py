"""The ``_bulk`` request body and the per-item reading of its answer: pure, no I/O.

The retry *decision* lives here (the schedule is :mod:`killkrill.workers.retry`):

==========================  ==========================================================
item status                 outcome
==========================  ==========================================================
2xx                         :class:`Delivered` - acknowledge the entry
429, 5xx                    :class:`Retry` - overloaded or failing; write it again later
400 (mapping / parsing),    :class:`Reject` - this document can never be indexed as is;
409, 413                    dead-letter it with Elasticsearch's reason
401, 403, 404, other        :class:`Retry` - a permission, index-closed or configuration
                            problem an operator fixes; never dropped for it
==========================  ==========================================================

An entry the answer does not mention counts as :class:`Retry` (see
:class:`killkrill.workers.base.Sink`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from killkrill.workers.base import DELIVERED, Outcome, Reject, Retry
from killkrill.workers.logs.transform import LogDocument

__all__ = [
    "MAX_REASON_CHARS",
    "REJECT_STATUSES",
    "classify_items",
    "classify_status",
    "encode_bulk",
    "error_reason",
]

REJECT_STATUSES = frozenset({400, 409, 413})
"""Item statuses that retrying the same document cannot fix."""

MAX_REASON_CHARS = 2000
"""Longest reason kept for a dead letter, in characters."""


def encode_bulk(docs: Sequence[LogDocument]) -> bytes:
    """NDJSON body: each document's ``index`` action line, then its source."""
    parts: list[bytes] = []
    for doc in docs:
        parts.append(doc.action)
        parts.append(doc.source)
    parts.append(b"")
    return b"\n".join(parts)


def error_reason(status: int, error: object) -> str:
    """One line from an item's ``error`` object: status, type, reason and its cause."""
    if isinstance(error, Mapping):
        kind = error.get("type", "error")
        text = f"elasticsearch {status} {kind}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, Mapping) and cause.get("reason"):
            text += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
    else:
        text = f"elasticsearch {status}: {error}"
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def classify_status(status: int, error: object) -> Outcome:
    """The outcome of one bulk item from its status and error."""
    if 200 <= status < 300:
        return DELIVERED
    reason = error_reason(status, error)
    if status in REJECT_STATUSES:
        return Reject(reason)
    return Retry(reason)


def classify_items(ids: Sequence[str], response: Mapping[str, Any]) -> dict[str, Outcome]:
    """Outcomes by entry ID from a ``_bulk`` answer; ``ids`` are in request order.

    Items are matched by position (Elasticsearch answers in request order). When the
    answer has fewer items than the request, the missing ones are left out (so: retried).
    """
    items = response.get("items") or []
    if not response.get("errors") and len(items) == len(ids):
        return dict.fromkeys(ids, DELIVERED)
    outcomes: dict[str, Outcome] = {}
    for entry_id, item in zip(ids, items, strict=False):
        result: Mapping[str, Any] = (
            next(iter(item.values()), {}) if isinstance(item, Mapping) else {}
        )
        status = int(result.get("status", 0) or 0)
        outcomes[entry_id] = classify_status(status, result.get("error"))
    return outcomes
