"""The per-metric series cap: which new label sets a batch may open."""

from __future__ import annotations

from killkrill.workers.metrics.cardinality import SeriesCache, admit


def test_new_series_admitted_up_to_the_cap_in_order() -> None:
    got = admit([("m", "h1"), ("m", "h2"), ("m", "h3"), ("n", "h1")], {"m": {"h0"}, "n": set()}, 3)
    assert got.new == [("m", "h1"), ("m", "h2"), ("n", "h1")]
    assert list(got.refused) == [("m", "h3")]
    assert "label explosion" in got.refused[("m", "h3")]
    assert "cap is 3" in got.refused[("m", "h3")]


def test_existing_series_always_pass_even_at_the_cap() -> None:
    got = admit([("m", "a"), ("m", "b")], {"m": {"a", "b"}}, 2)
    assert (got.new, got.refused) == ([], {})


def test_cache_reports_missing_once_in_order() -> None:
    cache = SeriesCache(10)
    cache.add([("m", "a")])
    assert cache.missing([("m", "b"), ("m", "a"), ("m", "b"), ("n", "a")]) == [
        ("m", "b"),
        ("n", "a"),
    ]
    cache.clear()
    assert cache.missing([("m", "a")]) == [("m", "a")]


def test_cache_is_a_bounded_lru_that_a_lookup_refreshes() -> None:
    cache = SeriesCache(2)
    cache.add([("m", "a"), ("m", "b")])
    assert cache.missing([("m", "a")]) == []  # a hit: ("m", "a") is now the most recent
    cache.add([("m", "c")])  # evicts the least recently used: ("m", "b")
    assert (len(cache), cache.size) == (2, 2)
    assert cache.recency() == [("m", "a"), ("m", "c")]
    assert cache.missing([("m", "a"), ("m", "b"), ("m", "c")]) == [("m", "b")]
