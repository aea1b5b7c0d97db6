"""The log worker: the logs stream -> Elasticsearch daily indices, one module per role.

* :mod:`~killkrill.workers.logs.settings` - the seed's flat config and the derived names;
* :mod:`~killkrill.workers.logs.transform` - payload -> document (pure);
* :mod:`~killkrill.workers.logs.template` - the index template (body pure, install I/O);
* :mod:`~killkrill.workers.logs.bulk` - ``_bulk`` body and per-item outcomes (pure);
* :mod:`~killkrill.workers.logs.sink` - the Elasticsearch sink (I/O, error translation);
* :mod:`~killkrill.workers.logs.metrics` - ``killkrill_log_worker_*`` Prometheus metrics;
* :mod:`~killkrill.workers.logs.worker` - :class:`LogWorker` (sync and async API);
* :mod:`~killkrill.workers.logs.service` - the long-running process (signals, ops port).
"""

from killkrill.errors import LogParseError
from killkrill.workers.logs.settings import LogWorkerNames, settings_from_seed
from killkrill.workers.logs.sink import ElasticsearchSink
from killkrill.workers.logs.transform import LogDocument, LogTransformer
from killkrill.workers.logs.worker import LogWorker

__all__ = [
    "ElasticsearchSink",
    "LogDocument",
    "LogParseError",
    "LogTransformer",
    "LogWorker",
    "LogWorkerNames",
    "settings_from_seed",
]
