"""A bounded least-recently-used cache for the workers' per-process memos.

:class:`Lru` is an :class:`~collections.OrderedDict` (C-implemented) that never holds more
than ``size`` entries: :meth:`Lru.put` evicts the least recently used one past it, and
:meth:`Lru.get_recent` marks an entry used. Order: least recently used first.

On a hot path, mark a hit with the bound C method ``cache.move_to_end(key)`` (it raises
:class:`KeyError` on a miss), which costs about as much as a set lookup::

    touch = cache.move_to_end
    try:
        touch(key)          # a hit, now the most recently used
    except KeyError:
        cache.put(key, compute(key))

Plain ``cache[key]`` and ``key in cache`` read without changing the order.

Threads may share one cache (the metrics store's transactions run in several): every
single operation is atomic under the GIL, and :meth:`Lru.get_recent` / :meth:`Lru.put`
tolerate an entry evicted by another thread between two of them; the bound then holds
once the writers are done (it may be passed by one entry per concurrent writer meanwhile),
and :attr:`Lru.evictions` is approximate.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

__all__ = ["Lru"]

K = TypeVar("K")
V = TypeVar("V")


class Lru(OrderedDict[K, V]):
    """At most ``size`` entries; the least recently used goes first (see module doc)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an LRU cache holds at least 1 entry, not {size}")
        super().__init__()
        self.size = size
        self.evictions = 0
        """Entries evicted so far (a cache that evicts all the time is too small)."""

    def get_recent(self, key: K) -> V | None:
        """The value of ``key``, now the most recently used; None when absent."""
        try:
            self.move_to_end(key)
            return self[key]
        except KeyError:  # absent, or evicted by another thread in between
            return None

    def put(self, key: K, value: V) -> None:
        """Store ``key`` as the most recently used, evicting the least recently used entries
        while the cache is over ``size``."""
        self[key] = value
        try:
            self.move_to_end(key)
        except KeyError:  # evicted by another thread in between
            return
        while len(self) > self.size:
            try:
                self.popitem(last=False)
            except KeyError:  # emptied by another thread
                break
            self.evictions += 1
