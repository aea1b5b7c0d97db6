"""The benchmark harness behind ``killkrill bench`` (see ``bench/README.md``).

Layout:

- :mod:`~killkrill.bench.runner`: the order of the scenarios, the bench's services, results;
- :mod:`~killkrill.bench.services`: the bench's own Redis, PostgreSQL and Elasticsearch;
- :mod:`~killkrill.bench.peers`: rsyslog, syslog-ng and the tools, installed when missing;
- :mod:`~killkrill.bench.contenders`: KillKrill, rsyslog, syslog-ng as syslog pipelines;
- :mod:`~killkrill.bench.loadgen`: the syslog load and how it is seen arriving;
- :mod:`~killkrill.bench.syslog_round`: one round of one syslog contender;
- :mod:`~killkrill.bench.proctree`: CPU and RSS of process trees from ``/proc``;
- :mod:`~killkrill.bench.results`: figures per round, medians, the table, ``results.json``;
- :mod:`~killkrill.bench.charts`: PNG charts (matplotlib);
- :mod:`killkrill.bench.scenarios`: one module per scenario, each with ``run(ctx)``.

Nothing here is imported by the pipeline's own processes.
"""

from __future__ import annotations

__all__ = ["SCENARIOS"]

SCENARIOS: dict[str, str] = {
    "e2e": "syslog -> searchable in Elasticsearch (and with Elasticsearch paused)",
    "latency": "receive -> searchable p50/p99 at a fixed load (half the e2e maximum)",
    "http": "HTTP ingest into Redis, batches of 1/100/1000 vs redis-benchmark XADD",
    "log-worker": "log worker vs a bare _bulk loader, shared CPUs and --pin",
    "doc-shape": "Elasticsearch CPU per syslog document: the peers', KillKrill's, lean, dynamic",
    "metrics": "metrics worker vs a bare upsert loader; Prometheus remote_write",
    "scaling": "log workers 1/2/4 processes, syslog receivers 1/2 processes",
}
"""Scenario name -> what it measures, in the order they run."""
