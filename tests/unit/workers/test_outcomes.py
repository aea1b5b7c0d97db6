"""Sorting a sink's answer into ack / dead-letter / retry, and counting it.

Both have a fast path for the usual answer (everything delivered, the shared
``DELIVERED``); these tests pin that any other answer still goes the long way.
"""

from __future__ import annotations

from typing import Any

from killkrill.streams.consumer import Entry
from killkrill.workers.base import (
    DELIVERED,
    Delivered,
    Item,
    Outcome,
    Reject,
    Retry,
    sort_outcomes,
)
from killkrill.workers.logs.metrics import LogWorkerMetrics


def _items(*ids: str) -> list[Item[str]]:
    return [Item(Entry("s", i, {b"data": b"{}"}), f"record {i}") for i in ids]


def test_everything_delivered_is_acked_in_order() -> None:
    items = _items("1-0", "2-0", "3-0")
    acked, rejects, retry, reason = sort_outcomes(
        items, dict.fromkeys(["3-0", "1-0", "2-0"], DELIVERED)
    )
    assert (acked, rejects, retry, reason) == (["1-0", "2-0", "3-0"], [], [], "")


def test_an_equal_delivered_answer_counts_as_delivered() -> None:
    items = _items("1-0", "2-0")
    outcomes: dict[str, Outcome] = {"1-0": Delivered(), "2-0": DELIVERED}
    assert sort_outcomes(items, outcomes)[0] == ["1-0", "2-0"]


def test_a_mixed_answer_is_sorted_and_a_missing_one_retried() -> None:
    items = _items("1-0", "2-0", "3-0", "4-0")
    outcomes: dict[str, Outcome] = {
        "1-0": DELIVERED,
        "2-0": Reject("mapping error"),
        "3-0": Retry("429"),
    }
    acked, rejects, retry, reason = sort_outcomes(items, outcomes)
    assert acked == ["1-0"]
    assert [(entry.id, why) for entry, why in rejects] == [("2-0", "mapping error")]
    assert [item.entry.id for item in retry] == ["3-0", "4-0"]
    assert reason == "the sink gave no answer for it"  # the last one retried: 4-0


def _counted(metrics: LogWorkerMetrics) -> dict[str, Any]:
    return {
        s.labels["outcome"]: s.value
        for metric in metrics.bulk_items.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    }


def test_outcomes_are_counted_by_kind() -> None:
    metrics = LogWorkerMetrics()
    metrics.count_outcomes([DELIVERED] * 3)
    metrics.count_outcomes([DELIVERED, Delivered(), Reject("r"), Retry("a"), Retry("b")])
    assert _counted(metrics) == {"delivered": 5.0, "reject": 1.0, "retry": 2.0}
