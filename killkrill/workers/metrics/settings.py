"""The seed's flat config dict, translated into :class:`MetricsWorkerSettings`.

The seed builds workers from a flat dict (``redis_url`` as a host with ``redis_port`` and
``redis_db`` beside it, or a full URL). Keys understood, with the setting each one sets:

=========================  ============================================================
``redis_url``              ``redis.url`` (host, or full ``redis://`` URL)
``redis_port``/``redis_db``  completes a host-only ``redis_url`` (defaults 6379 / 0)
``database_url``           ``database.url``
``batch_size``             ``consumer.batch_size`` (entries per batch)
``in_flight``              ``consumer.in_flight`` (batches handled at once)
``bucket_seconds``         ``aggregation.bucket_seconds``
``timeout``                seconds: ``redis.socket_timeout`` and
                           ``aggregation.statement_timeout``
``streams``                ``streams`` (names; ``<name>-stream`` is read)
``group``/``consumer``     ``consumer.group`` / ``consumer.name``
``claim_idle_ms``          ``consumer.claim_idle_ms``
``max_deliveries``         ``consumer.max_deliveries``
``max_dead_letters``       ``consumer.max_dead_letters``
``max_retries``            ``retry.max_retries``
``max_series_per_metric``  ``aggregation.max_series_per_metric`` (cardinality cap)
``retention_seconds``      ``retention.max_age_seconds``
``pipeline``               ``pipeline``
``ops_port``               ``ops.port``
=========================  ============================================================

Anything else is a :class:`~killkrill.errors.ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from killkrill.config import MetricsWorkerSettings, set_dotted
from killkrill.errors import ConfigError
from killkrill.streams.connection import redis_url

__all__ = ["SEED_KEYS", "settings_from_seed"]

SEED_KEYS: dict[str, tuple[str, ...]] = {
    "database_url": ("database.url",),
    "batch_size": ("consumer.batch_size",),
    "in_flight": ("consumer.in_flight",),
    "bucket_seconds": ("aggregation.bucket_seconds",),
    "timeout": ("redis.socket_timeout", "aggregation.statement_timeout"),
    "streams": ("streams",),
    "group": ("consumer.group",),
    "consumer": ("consumer.name",),
    "claim_idle_ms": ("consumer.claim_idle_ms",),
    "max_deliveries": ("consumer.max_deliveries",),
    "max_dead_letters": ("consumer.max_dead_letters",),
    "max_retries": ("retry.max_retries",),
    "max_series_per_metric": ("aggregation.max_series_per_metric",),
    "retention_seconds": ("retention.max_age_seconds",),
    "pipeline": ("pipeline",),
    "ops_port": ("ops.port",),
}
_REDIS_KEYS = ("redis_url", "redis_port", "redis_db")


def settings_from_seed(config: Mapping[str, Any]) -> MetricsWorkerSettings:
    """Translate the seed's flat dict (see the module table) into settings."""
    unknown = sorted(set(config) - set(SEED_KEYS) - set(_REDIS_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown metrics worker config key(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted((*SEED_KEYS, *_REDIS_KEYS)))}"
        )
    data: dict[str, Any] = {}
    if config.get("redis_url"):
        data["redis"] = {
            "url": redis_url(
                str(config["redis_url"]), config.get("redis_port"), config.get("redis_db")
            )
        }
    for key, paths in SEED_KEYS.items():
        if config.get(key) is not None:
            for path in paths:
                set_dotted(data, path, config[key])
    return MetricsWorkerSettings.validate_settings(data)
