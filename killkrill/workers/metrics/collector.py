"""The aggregates as Prometheus series: a custom collector reading the newest buckets.

For every series (name + labels) whose newest sample is recent enough, the newest bucket
gives, with the series' original labels:

* the value: counters as ``<name>_total`` (the ``last`` value: counters arrive cumulative,
  as Prometheus exposition and remote_write send them), gauges and every other type as
  ``<name>`` with the ``last`` value;
* the bucket's aggregate as a summary family ``<name>_window``: ``<name>_window_count`` and
  ``<name>_window_sum`` (samples and their sum in the bucket), plus gauges
  ``<name>_window_min`` and ``<name>_window_max``.

A family name already emitted (for example a user series literally named ``x_window``) is
not emitted twice, so the exposition stays valid. When the query fails the scrape still
answers, without the aggregates, and ``killkrill_metrics_worker_exposition_errors_total``
counts it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.engine import Engine

from killkrill.workers.metrics.instruments import Instruments

__all__ = ["AggregatesCollector", "latest_buckets"]

log = logging.getLogger(__name__)

_LATEST_SQL = text(
    """
    SELECT DISTINCT ON (name, labels_hash)
        name, labels, type, count, sum, min, max, last
    FROM aggregated_metrics
    WHERE last_seen >= now() - make_interval(secs => :max_age)
        -- a bucket is at most a day wide (ck_aggregated_metrics_bucket_seconds_max), so this
        -- bound on the indexed bucket_start keeps every row of the exact filter above
        AND bucket_start > now() - make_interval(secs => :max_age + 86400)
    ORDER BY name, labels_hash, bucket_start DESC, bucket_seconds
    """
)


def latest_buckets(engine: Engine, max_age_seconds: float) -> list[dict[str, Any]]:
    """The newest bucket of every series with a sample in the last ``max_age_seconds``."""
    with engine.connect() as conn:
        rows = conn.execute(_LATEST_SQL, {"max_age": max_age_seconds}).mappings().all()
    return [dict(row) for row in rows]


class AggregatesCollector(Collector):
    """Prometheus collector over the ``aggregated_metrics`` table (see module doc)."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_age_seconds: float = 900,
        instruments: Instruments | None = None,
    ) -> None:
        self.engine = engine
        self.max_age_seconds = max_age_seconds
        self.instruments = instruments

    def describe(self) -> list[Metric]:
        """Nothing up front: the families depend on the data (no query at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            rows = latest_buckets(self.engine, self.max_age_seconds)
        except Exception as exc:
            log.warning("aggregates left out of /metrics: %s", exc)
            if self.instruments is not None:
                self.instruments.collect_errors.inc()
            return
        yield from families(rows)


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
