"""The seed's flat config dict, translated into :class:`MetricsWorkerSettings`.

The keys both workers understand are in :data:`killkrill.workers.seed.COMMON_KEYS`
(``redis_url`` as a host with ``redis_port``/``redis_db``, or a full URL; ``batch_size``,
``in_flight``, ``group``/``consumer_group``, ``consumer``/``consumer_name``,
``claim_idle_ms``, ``max_deliveries``, ``max_retries``, ``pipeline``, ``ops_port``...).
The metrics worker's own:

=========================  ============================================================
``database_url``           ``database.url``
``bucket_seconds``         ``aggregation.bucket_seconds``
``timeout``                seconds: ``redis.socket_timeout`` and
                           ``aggregation.statement_timeout``
``streams``                ``streams`` (names; ``<name>-stream`` is read)
``max_series_per_metric``  ``aggregation.max_series_per_metric`` (cardinality cap)
``retention_seconds``      ``retention.max_age_seconds``
=========================  ============================================================

Anything else is a :class:`~killkrill.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from killkrill.config import MetricsWorkerSettings
from killkrill.workers.seed import COMMON_KEYS
from killkrill.workers.seed import settings_from_seed as seed_settings

__all__ = ["SEED_KEYS", "settings_from_seed"]

SEED_KEYS: dict[str, tuple[str, ...]] = {
    **COMMON_KEYS,
    "database_url": ("database.url",),
    "bucket_seconds": ("aggregation.bucket_seconds",),
    "timeout": ("redis.socket_timeout", "aggregation.statement_timeout"),
    "streams": ("streams",),
    "max_series_per_metric": ("aggregation.max_series_per_metric",),
    "retention_seconds": ("retention.max_age_seconds",),
}


def settings_from_seed(config: Mapping[str, Any]) -> MetricsWorkerSettings:
    """Translate the seed's flat dict (see the module table) into settings."""
    return seed_settings(config, MetricsWorkerSettings, SEED_KEYS)
