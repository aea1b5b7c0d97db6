"""The metrics worker's per-process caches are bounded by their settings (pure: no I/O,
the engines are never connected)."""

from __future__ import annotations

from killkrill.config import MetricsWorkerSettings
from killkrill.db import create_engine
from killkrill.workers.metrics import MetricStore, MetricsWorker


def test_store_remembers_at_most_series_cache_size_encoded_series() -> None:
    engine = create_engine("postgresql://nobody@127.0.0.1:1/none")
    store = MetricStore(engine, series_cache_size=2)
    a, b, c = ((("k", v),) for v in "abc")
    first = store._series_of("m", a)
    store._series_of("m", b)
    assert store._series_of("m", a) is first  # a hit, and now the most recent
    store._series_of("m", c)  # evicts b, the least recently used
    assert list(store._series) == [("m", a), ("m", c)]
    assert store._series_of("m", b).labels_json == '{"k":"b"}'  # worked out again
    assert len(store._series) == 2
    engine.dispose()


def test_worker_sizes_its_caches_from_the_aggregation_settings() -> None:
    settings = MetricsWorkerSettings.validate_settings(
        {"aggregation": {"series_cache_size": 3, "parse_cache_size": 4}}
    )
    worker = MetricsWorker(settings)
    try:
        assert worker.store.series.size == 3
        assert worker.store._series.size == 3
        assert (worker.parser.names.size, worker.parser.seconds.size) == (4, 4)
    finally:
        worker.close()
