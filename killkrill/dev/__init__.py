"""The local service manager: real Redis, PostgreSQL and Elasticsearch on loopback.

``killkrill dev services up|down|status|env`` installs what is missing (Debian packages,
Elasticsearch from Maven Central), starts each service in its own data directory under
:func:`~killkrill.dev.process.state_dir` and prints the URLs for ``eval``. Services whose URL is
already given in the environment (``REDIS_URL``, ``TEST_DATABASE_URL``/``DATABASE_URL``,
``ELASTICSEARCH_URL``) are used as they are and never started.

``killkrill dev k8s`` (:mod:`killkrill.dev.k8s`) runs a local Kubernetes control plane.

The manager is imported on first use (PEP 562): it pulls in the Redis, PostgreSQL and
Elasticsearch clients, which the other submodules do not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from killkrill.dev.manager import ServiceManager, ServiceStatus

__all__ = ["ServiceManager", "ServiceStatus"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from killkrill.dev import manager

        return getattr(manager, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
