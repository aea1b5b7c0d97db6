"""The bounded LRU of the workers' memos: its bound and its eviction order (pure)."""

from __future__ import annotations

import threading

import pytest

from killkrill.workers.lru import Lru


@pytest.mark.parametrize(
    ("size", "ops", "order", "evictions"),
    [
        # ops: ("put", key) or ("get", key); order: keys least recently used first
        (2, [("put", "a"), ("put", "b"), ("put", "c")], ["b", "c"], 1),
        (2, [("put", "a"), ("put", "b"), ("get", "a"), ("put", "c")], ["a", "c"], 1),
        (2, [("put", "a"), ("put", "b"), ("put", "a"), ("put", "c")], ["a", "c"], 1),
        (3, [("put", "a"), ("put", "b"), ("get", "x"), ("put", "c")], ["a", "b", "c"], 0),
        (1, [("put", "a"), ("put", "b"), ("get", "a"), ("put", "c")], ["c"], 2),
        (3, [("put", k) for k in "abcdefg"], ["e", "f", "g"], 4),
    ],
)
def test_bound_and_eviction_order(
    size: int, ops: list[tuple[str, str]], order: list[str], evictions: int
) -> None:
    cache: Lru[str, int] = Lru(size)
    for n, (op, key) in enumerate(ops):
        if op == "put":
            cache.put(key, n)
        else:
            cache.get_recent(key)
        assert len(cache) <= size
    assert list(cache) == order
    assert cache.evictions == evictions


def test_get_recent_answers_the_value_or_none() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    assert cache.get_recent("a") == 1
    assert cache.get_recent("b") is None
    cache.put("a", 2)  # an update keeps one entry
    assert (list(cache.items()), cache.evictions) == ([("a", 2)], 0)


def test_plain_reads_do_not_change_the_order() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert "a" in cache and cache["a"] == 1
    cache.put("c", 3)
    assert list(cache) == ["b", "c"]


def test_the_hot_path_idiom_marks_a_hit_and_raises_on_a_miss() -> None:
    cache: Lru[str, None] = Lru(2)
    cache.put("a", None)
    cache.put("b", None)
    cache.move_to_end("a")
    with pytest.raises(KeyError):
        cache.move_to_end("z")
    cache.put("c", None)
    assert list(cache) == ["a", "c"]


@pytest.mark.parametrize("size", [0, -1])
def test_a_cache_holds_at_least_one_entry(size: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Lru(size)


def test_threads_sharing_a_cache_keep_it_bounded() -> None:
    cache: Lru[int, int] = Lru(50)

    def churn(offset: int) -> None:
        for i in range(20_000):
            cache.put(offset + i % 300, i)
            cache.get_recent(offset + (i * 7) % 300)

    threads = [threading.Thread(target=churn, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50
