"""Folding a batch of samples into one row per (name, labels, bucket). Pure: no I/O.

The rows are what one ``INSERT ... ON CONFLICT DO UPDATE`` merges into PostgreSQL; since a
statement may touch each key once, the batch must be folded first, which is also what makes
the write cheap (one row per group instead of one per sample).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from killkrill.workers.metrics.sample import Sample

__all__ = ["Group", "GroupKey", "aggregate", "bucket_start", "labels_hash"]

GroupKey = tuple[str, tuple[tuple[str, str], ...], int]
"""(name, sorted label pairs, bucket start in epoch seconds)."""


def labels_hash(labels: tuple[tuple[str, str], ...]) -> str:
    """32 hex digits (blake2b-128) of the labels as sorted JSON: the series key in SQL."""
    payload = orjson.dumps(dict(labels), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def bucket_start(timestamp: float, bucket_seconds: int) -> int:
    """Start (epoch seconds) of the ``bucket_seconds``-wide bucket holding ``timestamp``:
    the one definition of bucket arithmetic (:func:`aggregate` keys its groups by it).

    Floor division, which is exact for floats (``timestamp / bucket_seconds`` could round
    up to the next integer just below a boundary)."""
    return int(timestamp // bucket_seconds) * bucket_seconds


@dataclass(slots=True)
class Group:
    """Running aggregate of the samples of one key within a batch.

    ``last`` is the value at the latest timestamp; on a tie the sample folded later (later
    in the stream) wins, the same rule the SQL merge applies across batches.
    """

    name: str
    labels: tuple[tuple[str, str], ...]
    bucket_start: int
    type: str
    count: int
    sum: float
    min: float
    max: float
    last: float
    first_seen: float
    last_seen: float


def aggregate(samples: Iterable[Sample], bucket_seconds: int) -> dict[GroupKey, Group]:
    """Fold ``samples`` (in stream order) into one :class:`Group` per (name, labels, bucket)."""
    groups: dict[GroupKey, Group] = {}
    get = groups.get
    for sample in samples:  # this loop runs once per sample: keep it flat
        name, v, labels, ts, kind = sample
        key = (name, labels, bucket_start(ts, bucket_seconds))
        g = get(key)
        if g is None:
            groups[key] = Group(name, labels, key[2], kind, 1, v, v, v, v, ts, ts)
            continue
        g.count += 1
        g.sum += v
        if v < g.min:
            g.min = v
        if v > g.max:
            g.max = v
        if ts >= g.last_seen:
            g.last_seen = ts
            g.last = v
            g.type = kind
        if ts < g.first_seen:
            g.first_seen = ts
    return groups
