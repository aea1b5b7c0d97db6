"""The aggregates rendered as Prometheus text (pure: rows in, exposition out)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from killkrill.workers.metrics.collector import families


class _Rows(Collector):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        yield from families(self.rows)


def render(*rows: dict[str, Any]) -> str:
    registry = CollectorRegistry()
    registry.register(_Rows(list(rows)))
    return generate_latest(registry).decode()


def row(name: str, kind: str, labels: dict[str, str], last: float, **kw: float) -> dict[str, Any]:
    base = {"count": 2, "sum": 3.0, "min": 1.0, "max": 2.0}
    return {"name": name, "type": kind, "labels": labels, "last": last, **base, **kw}


def test_counter_as_total_with_window_count_and_sum() -> None:
    text = render(
        row("http_requests_total", "counter", {"endpoint": "/a"}, 104.0, count=5, sum=510.0)
    )
    assert "# TYPE http_requests_total counter" in text
    assert 'http_requests_total{endpoint="/a"} 104.0' in text
    assert 'http_requests_total_window_count{endpoint="/a"} 5.0' in text
    assert 'http_requests_total_window_sum{endpoint="/a"} 510.0' in text


def test_counter_without_suffix_gets_total() -> None:
    assert "jobs_total 7.0" in render(row("jobs", "counter", {}, 7.0))


def test_gauge_last_value_min_max() -> None:
    text = render(row("temp", "gauge", {"room": "a"}, 21.5, min=19.0, max=25.0))
    assert "# TYPE temp gauge" in text
    assert 'temp{room="a"} 21.5' in text
    assert 'temp_window_min{room="a"} 19.0' in text
    assert 'temp_window_max{room="a"} 25.0' in text


def test_series_with_different_label_sets_share_a_family() -> None:
    text = render(row("q", "gauge", {"a": "1"}, 1.0), row("q", "gauge", {"b": "2"}, 2.0))
    assert text.count("# TYPE q gauge") == 1
    assert 'q{a="1",b=""} 1.0' in text
    assert 'q{a="",b="2"} 2.0' in text


def test_a_family_name_is_never_emitted_twice() -> None:
    text = render(row("x", "gauge", {}, 1.0), row("x_window", "gauge", {}, 2.0))
    assert text.count("# TYPE x_window ") == 1
