"""The aggregates as Prometheus series: a custom collector over the aggregates snapshot.

For every series (name + labels) whose newest sample is recent enough, the newest bucket
gives, with the series' original labels:

* the value: counters as ``<name>_total`` (the ``last`` value: counters arrive cumulative,
  as Prometheus exposition and remote_write send them), gauges and every other type as
  ``<name>`` with the ``last`` value;
* the bucket's aggregate as a summary family ``<name>_window``: ``<name>_window_count`` and
  ``<name>_window_sum`` (samples and their sum in the bucket), plus gauges
  ``<name>_window_min`` and ``<name>_window_max``.

A family name already emitted (for example a user series literally named ``x_window``) is
not emitted twice, so the exposition stays valid. A scrape never queries PostgreSQL: the
rows come from :class:`~killkrill.workers.metrics.snapshot.AggregatesSnapshot`, refreshed
off the event loop, whose age and failed refreshes are exposed beside them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from killkrill.workers.metrics.snapshot import AggregatesSnapshot, latest_buckets

__all__ = ["AggregatesCollector", "families", "latest_buckets"]


class AggregatesCollector(Collector):
    """Prometheus collector over an :class:`AggregatesSnapshot` (see module doc)."""

    def __init__(self, snapshot: AggregatesSnapshot) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the data (no query at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        yield from families(self.snapshot.rows())


def families(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    """Metric families for ``rows`` (as :func:`latest_buckets` returns them). Pure."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    emitted: set[str] = set()
    for name in sorted(by_name):
        series = by_name[name]
        kind = series[-1]["type"]
        label_names = sorted({key for row in series for key in row["labels"]})
        value: CounterMetricFamily | GaugeMetricFamily
        if kind == "counter":
            base = name[: -len("_total")] if name.endswith("_total") else name
            value = CounterMetricFamily(base, f"{name}: newest value", labels=label_names)
            family = base
        else:
            value = GaugeMetricFamily(name, f"{name}: newest value", labels=label_names)
            family = name
        window = SummaryMetricFamily(
            f"{name}_window",
            f"{name}: samples and their sum in the newest bucket",
            labels=label_names,
        )
        low = GaugeMetricFamily(
            f"{name}_window_min",
            f"{name}: smallest sample in the newest bucket",
            labels=label_names,
        )
        high = GaugeMetricFamily(
            f"{name}_window_max",
            f"{name}: largest sample in the newest bucket",
            labels=label_names,
        )
        for row in series:
            values = [row["labels"].get(key, "") for key in label_names]
            value.add_metric(values, row["last"])
            window.add_metric(values, count_value=row["count"], sum_value=row["sum"])
            low.add_metric(values, row["min"])
            high.add_metric(values, row["max"])
        for fam_name, metric in (
            (family, value),
            (f"{name}_window", window),
            (f"{name}_window_min", low),
            (f"{name}_window_max", high),
        ):
            if fam_name not in emitted:
                emitted.add(fam_name)
                yield metric
