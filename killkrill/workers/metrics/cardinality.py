"""The per-metric cardinality cap: which new series a batch may open.

The decision is pure (:func:`admit`); the store feeds it the series PostgreSQL already
knows for the names concerned, read under a per-name advisory lock so that concurrent
workers cannot together overshoot the cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from killkrill.workers.lru import Lru

__all__ = ["Admission", "SeriesCache", "SeriesKey", "admit"]

SeriesKey = tuple[str, str]
"""(metric name, labels hash)."""


class SeriesCache:
    """Series this process has seen committed, so the common case (every series of the
    batch already known) costs no query.

    A bounded LRU of ``size`` series (``aggregation.series_cache_size``): a series it
    forgot is looked up again under the advisory lock, which is slower but as exact.
    Cleared by :meth:`clear` after pruning, since pruning may delete series."""

    def __init__(self, size: int) -> None:
        self._known: Lru[SeriesKey, None] = Lru(size)

    @property
    def size(self) -> int:
        return self._known.size

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def missing(self, keys: Iterable[SeriesKey]) -> list[SeriesKey]:
        """The keys not known yet, in the order given, without repeats. The known ones
        become the most recently used."""
        touch = self._known.move_to_end
        seen: set[SeriesKey] = set()
        out: list[SeriesKey] = []
        for key in keys:
            try:
                touch(key)
            except KeyError:
                if key not in seen:
                    seen.add(key)
                    out.append(key)
        return out

    def add(self, keys: Iterable[SeriesKey]) -> None:
        put = self._known.put
        for key in keys:
            put(key, None)

    def clear(self) -> None:
        self._known.clear()

    def recency(self) -> list[SeriesKey]:
        """The known keys, least recently used first (the next to be evicted first)."""
        return list(self._known)


@dataclass(frozen=True)
class Admission:
    """Outcome of :func:`admit`: series to create, and refused series with the reason."""

    new: list[SeriesKey]
    refused: dict[SeriesKey, str]


def admit(
    candidates: Iterable[SeriesKey],
    existing: Mapping[str, set[str]],
    cap: int,
) -> Admission:
    """Decide, in order, which ``candidates`` may exist under ``cap`` series per name.

    ``existing`` maps each candidate's name to the label hashes already stored. A candidate
    already stored is fine; a new one is admitted while its name has fewer than ``cap``
    series (counting those admitted before it), and refused after.
    """
    counts = {name: len(hashes) for name, hashes in existing.items()}
    new: list[SeriesKey] = []
    refused: dict[SeriesKey, str] = {}
    for key in candidates:
        name, digest = key
        if digest in existing.get(name, ()):
            continue
        n = counts.get(name, 0)
        if n < cap:
            counts[name] = n + 1
            new.append(key)
        else:
            refused[key] = (
                f"label explosion: metric {name} already has {n} series, the cap is {cap} "
                "(aggregation.max_series_per_metric); this label set would open a new one"
            )
    return Admission(new, refused)
