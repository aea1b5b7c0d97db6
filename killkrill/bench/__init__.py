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
