"""The local service manager: real Redis, PostgreSQL and Elasticsearch on loopback.

``killkrill dev services up|down|status|env`` installs what is missing (Debian packages,
Elasticsearch from Maven Central), starts each service in its own data directory under
:func:`~killkrill.dev.process.state_dir` and prints the URLs for ``eval``. Services whose URL is
already given in the environment (``REDIS_URL``, ``TEST_DATABASE_URL``/``DATABASE_URL``,
``ELASTICSEARCH_URL``) are used as they are and never started.
"""

from killkrill.dev.manager import ServiceManager, ServiceStatus

__all__ = ["ServiceManager", "ServiceStatus"]
