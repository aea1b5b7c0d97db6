"""The metrics worker: metric samples from Redis Streams aggregated exactly once into
PostgreSQL, and exposed to Prometheus.

Modules, one job each:

* :mod:`.sample` - an entry's JSON into a :class:`Sample` (shared schema rules);
* :mod:`.aggregate` - a batch folded per (name, labels, bucket); pure;
* :mod:`.cardinality` - the per-metric series cap; pure decision;
* :mod:`.store` - one PostgreSQL transaction per batch: cap, ledger, upsert; the Sink;
* :mod:`.snapshot` - the aggregates ``/metrics`` serves, read in a thread of their own;
* :mod:`.collector` - that snapshot as Prometheus families for ``/metrics``;
* :mod:`.retention` - pruning of buckets, series and spent ledger rows (worker and CLI);
* :mod:`.instruments` - the worker's own ``killkrill_metrics_worker_*`` metrics;
* :mod:`.settings` - the seed's flat config dict;
* :mod:`.faults` - crash points for exactly-once tests;
* :mod:`.worker` - :class:`MetricsWorker`, tying them to the shared stream loop.
"""

from killkrill.workers.metrics.aggregate import Group, aggregate, bucket_start, labels_hash
from killkrill.workers.metrics.collector import AggregatesCollector, latest_buckets
from killkrill.workers.metrics.sample import Sample, SampleParser, parse_entry, parse_sample
from killkrill.workers.metrics.settings import settings_from_seed
from killkrill.workers.metrics.snapshot import AggregatesSnapshot
from killkrill.workers.metrics.store import ApplyResult, MetricsSink, MetricStore
from killkrill.workers.metrics.worker import DEFAULT_GROUP, MetricsWorker

__all__ = [
    "DEFAULT_GROUP",
    "AggregatesCollector",
    "AggregatesSnapshot",
    "ApplyResult",
    "Group",
    "MetricStore",
    "MetricsSink",
    "MetricsWorker",
    "Sample",
    "SampleParser",
    "aggregate",
    "bucket_start",
    "labels_hash",
    "latest_buckets",
    "parse_entry",
    "parse_sample",
    "settings_from_seed",
]
