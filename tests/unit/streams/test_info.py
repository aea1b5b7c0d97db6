"""XINFO / XPENDING replies parsed, and the delivery floor decided from them (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from killkrill.streams.info import (
    GroupInfo,
    PendingSummary,
    StreamInfo,
    floor_of,
    format_id,
    next_id,
    parse_groups,
    parse_id,
    parse_pending_summary,
    parse_stream_info,
)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (b"1700000000000-3", (1700000000000, 3)),
        ("0-0", (0, 0)),
        ("42", (42, 0)),
        (b"18446744073709551615-18446744073709551615", (2**64 - 1, 2**64 - 1)),
    ],
)
def test_parse_id(raw: bytes | str, parsed: tuple[int, int]) -> None:
    assert parse_id(raw) == parsed
    assert parse_id(format_id(parsed)) == parsed


@pytest.mark.parametrize("raw", ["", "-", "1-", "a-1", "1-b", "1-2-3", "-1-2", " 1-2"])
def test_parse_id_refuses_what_is_not_an_id(raw: str) -> None:
    with pytest.raises(ValueError, match="not a stream entry ID"):
        parse_id(raw)


def test_ids_order_numerically_not_as_text() -> None:
    assert parse_id("9-0") < parse_id("10-0")
    assert parse_id("5-9") < parse_id("5-10")
    assert next_id((5, 9)) == (5, 10)


def test_parse_stream_info_of_a_stream_with_entries_and_of_an_emptied_one() -> None:
    full: dict[str, Any] = {
        "length": 2,
        "last-generated-id": b"100-1",
        "first-entry": (b"100-0", {b"data": b"{}"}),
        "last-entry": (b"100-1", {b"data": b"{}"}),
    }
    assert parse_stream_info(full) == StreamInfo(2, (100, 0), (100, 1))
    emptied = {"length": 0, "last-generated-id": b"100-1", "first-entry": None}
    assert parse_stream_info(emptied) == StreamInfo(0, None, (100, 1))


def test_parse_groups_bytes_and_text_with_and_without_lag() -> None:
    reply: list[dict[str, Any]] = [
        {"name": b"a", "consumers": 2, "pending": 3, "last-delivered-id": b"7-1", "lag": 0},
        {"name": "b", "consumers": 0, "pending": 0, "last-delivered-id": "0-0", "lag": None},
    ]
    assert parse_groups(reply) == [
        GroupInfo("a", (7, 1), 3, 2, 0),
        GroupInfo("b", (0, 0), 0, 0, None),
    ]


def test_parse_pending_summary() -> None:
    some = {
        "pending": 3,
        "min": b"5-0",
        "max": b"9-2",
        "consumers": [{"name": b"c1", "pending": 2}, {"name": b"c2", "pending": 1}],
    }
    assert parse_pending_summary(some) == PendingSummary(3, (5, 0), (9, 2), {"c1": 2, "c2": 1})
    none = {"pending": 0, "min": None, "max": None, "consumers": []}
    assert parse_pending_summary(none) == PendingSummary(0, None, None, {})


def _group(name: str, last: tuple[int, int], pending: int = 0) -> GroupInfo:
    return GroupInfo(name, last, pending, 1, None)


@pytest.mark.parametrize(
    ("stream", "groups", "pending", "floor"),
    [
        # Everything acked and deleted: the next ID Redis may generate.
        (StreamInfo(0, None, (50, 4)), [_group("g", (50, 4))], {}, (50, 5)),
        # No group at all: whatever is still in the stream may be read by a future group.
        (StreamInfo(3, (40, 0), (50, 0)), [], {}, (40, 0)),
        # A group behind the others holds the floor down.
        (StreamInfo(0, None, (50, 0)), [_group("a", (50, 0)), _group("b", (20, 7))], {}, (20, 8)),
        # A pending entry (of a dead consumer) below everything else.
        (
            StreamInfo(0, None, (50, 0)),
            [_group("a", (50, 0), pending=1)],
            {"a": PendingSummary(1, (10, 2), (10, 2), {"dead": 1})},
            (10, 2),
        ),
        # The pending entry of the *other* group counts as much as the own group's.
        (
            StreamInfo(5, (30, 0), (50, 0)),
            [_group("mine", (50, 0)), _group("other", (50, 0), pending=2)],
            {"other": PendingSummary(2, (12, 0), (13, 0), {"x": 2})},
            (12, 0),
        ),
    ],
)
def test_delivery_floor_is_the_lowest_id_any_consumer_may_still_get(
    stream: StreamInfo,
    groups: list[GroupInfo],
    pending: dict[str, PendingSummary],
    floor: tuple[int, int],
) -> None:
    assert floor_of(stream, groups, pending) == floor
