"""Pure parts of the dead-letter commands: which letters a filter takes, replay pacing."""

from __future__ import annotations

import re

import pytest

from killkrill.streams.dead_letter import DeadLetter, DeadLetterFilter, _in_range
from killkrill.streams.replay import Pacer


def letter(reason: str) -> DeadLetter:
    return DeadLetter.from_entry("5-0", {b"reason": reason.encode(), b"data": b"{}"})


@pytest.mark.parametrize(
    ("selection", "reason", "taken"),
    [
        (DeadLetterFilter(), "anything", True),
        (DeadLetterFilter(reason="mapper"), "Mapper_parsing_exception", True),
        (DeadLetterFilter(reason="MAPPER"), "mapper_parsing_exception", True),
        (DeadLetterFilter(reason="mapper"), "not valid JSON", False),
        (DeadLetterFilter(reason_regex=re.compile(r"field \[d\w+\]")), "field [duration]", True),
        (DeadLetterFilter(reason_regex=re.compile(r"^field")), "bad field [duration]", False),
        (DeadLetterFilter(reason="json", reason_regex=re.compile("valid")), "not valid JSON", True),
        (DeadLetterFilter(reason="json", reason_regex=re.compile("^x")), "not valid JSON", False),
    ],
)
def test_reason_conditions(selection: DeadLetterFilter, reason: str, taken: bool) -> None:
    assert selection.matches(letter(reason)) is taken


@pytest.mark.parametrize(
    ("first", "last", "entry_id", "inside"),
    [
        ("-", "+", "1-0", True),
        ("10-0", "+", "9-9", False),
        ("10-0", "+", "10-0", True),
        ("-", "10-3", "10-3", True),
        ("-", "10-3", "10-4", False),
        ("10", "10", "10-7", True),  # milliseconds alone: the whole millisecond
        ("10", "10", "11-0", False),
    ],
)
def test_id_range_is_inclusive(first: str, last: str, entry_id: str, inside: bool) -> None:
    assert _in_range(entry_id, DeadLetterFilter(first=first, last=last)) is inside


@pytest.mark.parametrize(
    ("selection", "narrowed"),
    [
        (DeadLetterFilter(), False),
        (DeadLetterFilter(ids=("1-0",)), True),
        (DeadLetterFilter(first="1"), True),
        (DeadLetterFilter(last="1"), True),
        (DeadLetterFilter(reason="x"), True),
        (DeadLetterFilter(reason_regex=re.compile("x")), True),
    ],
)
def test_narrowed_means_some_condition(selection: DeadLetterFilter, narrowed: bool) -> None:
    assert selection.narrowed is narrowed


def test_a_letter_of_a_replayed_entry_names_the_first_entry_as_origin() -> None:
    fields = {
        b"source_stream": b"logs-stream",
        b"source_id": b"20-0",
        b"origin_stream": b"logs-stream",
        b"origin_id": b"10-0",
    }
    replayed = DeadLetter.from_entry("30-0", fields)
    assert (replayed.origin_stream, replayed.origin_id) == ("logs-stream", "10-0")
    first = DeadLetter.from_entry("30-0", {b"source_stream": b"s", b"source_id": b"20-0"})
    assert (first.origin_stream, first.origin_id) == ("s", "20-0")


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


@pytest.mark.parametrize(
    ("rate", "default", "chunk"),
    [(None, 100, 100), (1000, 100, 100), (50, 100, 5), (10, 100, 1), (0.5, 100, 1)],
)
def test_chunks_are_about_a_tenth_of_a_second(rate: float | None, default: int, chunk: int) -> None:
    assert Pacer(rate).chunk(default) == chunk


def test_pacer_keeps_to_the_rate_without_bursts_after_a_pause() -> None:
    t = FakeTime()
    pacer = Pacer(10, t.clock, t.sleep)
    for _ in range(3):
        pacer.wait()
        pacer.sent(1)
    assert t.slept == [0.1, 0.1]  # 3 items: the first at once, then one each 0.1 s
    t.now += 5  # a long pause (e.g. waiting for a backlog to drain)
    pacer.restart()
    pacer.wait()
    pacer.sent(1)
    pacer.wait()
    assert t.slept == [0.1, 0.1, 0.1]  # no catching up on the pause


def test_pacer_without_rate_never_sleeps() -> None:
    t = FakeTime()
    pacer = Pacer(None, t.clock, t.sleep)
    for _ in range(100):
        pacer.wait()
        pacer.sent(10)
    assert t.slept == []
