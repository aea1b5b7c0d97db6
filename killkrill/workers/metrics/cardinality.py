"""The per-metric cardinality cap: which new series a batch may open.

The decision is pure (:func:`admit`); the store feeds it the series PostgreSQL already
knows for the names concerned, read under a per-name advisory lock so that concurrent
workers cannot together overshoot the cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["Admission", "SeriesCache", "SeriesKey", "admit"]

SeriesKey = tuple[str, str]
"""(metric name, labels hash)."""


@dataclass
class SeriesCache:
    """Series this process has seen committed, so the common case (every series of the
    batch already known) costs no query. Cleared by :meth:`clear` after pruning, since
    pruning may delete series."""

    known: set[SeriesKey] = field(default_factory=set)

    def missing(self, keys: Iterable[SeriesKey]) -> list[SeriesKey]:
        """The keys not known yet, in the order given, without repeats."""
        seen: set[SeriesKey] = set()
        out: list[SeriesKey] = []
        for key in keys:
            if key not in self.known and key not in seen:
                seen.add(key)
                out.append(key)
        return out

    def add(self, keys: Iterable[SeriesKey]) -> None:
        self.known.update(keys)

    def clear(self) -> None:
        self.known.clear()


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
