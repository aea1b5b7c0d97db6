"""``_bulk`` encoding and per-item outcomes: the retry *decision* (pure, table-driven)."""

from __future__ import annotations

import orjson
import pytest

from killkrill.workers.base import DELIVERED, Reject, Retry
from killkrill.workers.logs.bulk import (
    MAX_REASON_CHARS,
    classify_items,
    classify_status,
    encode_bulk,
    error_reason,
)
from killkrill.workers.logs.transform import LogDocument, action_line


def test_encode_bulk_is_ndjson_of_index_actions() -> None:
    body = encode_bulk(
        [
            LogDocument(
                "logs-2024.01.06", 'a"1', b'{"x":1}', action_line("logs-2024.01.06", 'a"1')
            ),
            LogDocument("logs-2024.01.07", "b", b"{}", action_line("logs-2024.01.07", "b")),
        ]
    )
    lines = body.split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    assert [orjson.loads(line) for line in lines[:-1]] == [
        {"index": {"_index": "logs-2024.01.06", "_id": 'a"1'}},
        {"x": 1},
        {"index": {"_index": "logs-2024.01.07", "_id": "b"}},
        {},
    ]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "delivered"), (201, "delivered"),
        (429, "retry"), (500, "retry"), (502, "retry"), (503, "retry"), (504, "retry"),
        (401, "retry"), (403, "retry"), (404, "retry"), (0, "retry"),
        (400, "reject"), (409, "reject"), (413, "reject"),
    ],
)  # fmt: skip
def test_item_status_decides_the_outcome(status: int, kind: str) -> None:
    outcome = classify_status(status, {"type": "t", "reason": "r"})
    expected = {"delivered": type(DELIVERED), "retry": Retry, "reject": Reject}[kind]
    assert isinstance(outcome, expected)


def test_classify_items_by_position() -> None:
    response = {
        "errors": True,
        "items": [
            {"index": {"status": 201}},
            {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception",
                                                "reason": "queue full"}}},
            {"index": {"status": 400, "error": {
                "type": "document_parsing_exception", "reason": "failed to parse field [user]",
                "caused_by": {"type": "illegal_argument_exception", "reason": "bad value"}}}},
        ],
    }  # fmt: skip
    out = classify_items(["1-0", "1-1", "1-2"], response)
    assert out["1-0"] == DELIVERED
    assert out["1-1"] == Retry("elasticsearch 429 es_rejected_execution_exception: queue full")
    assert out["1-2"] == Reject(
        "elasticsearch 400 document_parsing_exception: failed to parse field [user] "
        "(caused by illegal_argument_exception: bad value)"
    )


def test_no_errors_means_all_delivered() -> None:
    response = {"errors": False, "items": [{"index": {"status": 201}}] * 2}
    assert classify_items(["a", "b"], response) == {"a": DELIVERED, "b": DELIVERED}


def test_missing_items_are_left_out_so_they_are_retried() -> None:
    response = {"errors": False, "items": [{"index": {"status": 201}}]}
    assert classify_items(["a", "b"], response) == {"a": DELIVERED}


def test_reason_is_bounded() -> None:
    text = error_reason(400, {"type": "x", "reason": "y" * 10_000})
    assert len(text) == MAX_REASON_CHARS
    assert text.endswith("...")
    assert error_reason(413, "too large") == "elasticsearch 413: too large"
