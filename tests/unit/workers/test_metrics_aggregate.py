"""Folding samples per (name, labels, bucket): pure, table-driven."""

from __future__ import annotations

import math

import pytest

from killkrill.workers.metrics.aggregate import aggregate, bucket_start, labels_hash
from killkrill.workers.metrics.sample import Sample


def s(value: float, ts: float, name: str = "m", labels: tuple = (), kind: str = "gauge") -> Sample:
    return Sample(name, value, labels, ts, kind)


@pytest.mark.parametrize(
    ("ts", "width", "start"),
    [
        (0, 60, 0),
        (59.999, 60, 0),
        (60, 60, 60),
        (1_700_000_123.5, 60, 1_700_000_100),
        (1_700_000_123, 3600, 1_699_999_200),
        (7, 1, 7),
        (math.nextafter(120.0, 0.0), 60, 60),  # just below a boundary stays below
        (math.nextafter(1_700_002_800.0, 0.0), 3600, 1_699_999_200),
    ],
)
def test_bucket_start_is_the_bucket_aggregate_files_a_sample_under(
    ts: float, width: int, start: int
) -> None:
    assert bucket_start(ts, width) == start
    ((_, _, bucket),) = aggregate([s(1, ts)], width)
    assert bucket == start


def test_groups_by_name_labels_and_bucket() -> None:
    groups = aggregate(
        [s(1, 10), s(2, 20), s(3, 70), s(4, 10, labels=(("a", "1"),)), s(5, 10, name="n")], 60
    )
    assert sorted((k[0], k[1], k[2], g.count, g.sum) for k, g in groups.items()) == [
        ("m", (), 0, 2, 3.0),
        ("m", (), 60, 1, 3.0),
        ("m", (("a", "1"),), 0, 1, 4.0),
        ("n", (), 0, 1, 5.0),
    ]


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        # (value, ts) in stream order -> (count, sum, min, max, last, first_seen, last_seen)
        ([(5, 1)], (1, 5, 5, 5, 5, 1, 1)),
        ([(5, 1), (3, 2), (9, 3)], (3, 17, 3, 9, 9, 1, 3)),
        ([(5, 3), (3, 2), (9, 1)], (3, 17, 3, 9, 5, 1, 3)),  # last by timestamp, not arrival
        ([(5, 2), (7, 2)], (2, 12, 5, 7, 7, 2, 2)),  # a tie: the later in the stream wins
        ([(-1.5, 1), (2.5, 1)], (2, 1.0, -1.5, 2.5, 2.5, 1, 1)),
    ],
)
def test_running_aggregate(samples: list[tuple[float, float]], expected: tuple) -> None:
    (group,) = aggregate([s(v, ts) for v, ts in samples], 60).values()
    got = (
        group.count,
        group.sum,
        group.min,
        group.max,
        group.last,
        group.first_seen,
        group.last_seen,
    )
    assert got == expected


def test_type_follows_the_latest_sample() -> None:
    (group,) = aggregate([s(1, 2, kind="counter"), s(1, 1, kind="gauge")], 60).values()
    assert group.type == "counter"


def test_labels_hash_is_stable_and_order_free() -> None:
    a = labels_hash((("a", "1"), ("b", "2")))
    assert a == labels_hash(tuple(sorted({"b": "2", "a": "1"}.items())))
    assert len(a) == 32
    assert a != labels_hash((("a", "1"),))
    assert labels_hash(()) == labels_hash(())
