"""The seed's flat config dict, translated into a worker's settings model: one function,
driven by each worker's table of keys.

The seed builds workers from a flat dict (``LogWorker({"redis_url": host, "redis_port":
6379, ...})``, ``MetricsWorker({...})``). Every key maps to one or more dotted settings
paths; :data:`COMMON_KEYS` are understood by both workers (either spelling of the consumer
group and name: ``consumer_group``/``group``, ``consumer_name``/``consumer``), each worker
adds its own. ``redis_url`` is a host (with ``redis_port``, default 6379, ``redis_db``,
default 0, and the ACL ``redis_username``/``redis_password``, default none, beside it) or a
full ``redis://`` URL; the URL built is a secret (see :mod:`killkrill.config.secrets`).
Unknown keys raise :class:`~killkrill.errors.ConfigError` naming them, so typos do not pass
silently; invalid values are all reported at once by the settings model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from killkrill.config import ProcessSettings, set_dotted
from killkrill.errors import ConfigError
from killkrill.streams.connection import redis_url

__all__ = ["COMMON_KEYS", "REDIS_KEYS", "settings_from_seed"]

S = TypeVar("S", bound=ProcessSettings)

REDIS_KEYS = ("redis_url", "redis_port", "redis_db", "redis_username", "redis_password")
"""Read together into ``redis.url``."""

COMMON_KEYS: dict[str, tuple[str, ...]] = {
    "batch_size": ("consumer.batch_size",),
    "block_ms": ("consumer.block_ms",),
    "in_flight": ("consumer.in_flight",),
    "consumer_group": ("consumer.group",),
    "group": ("consumer.group",),
    "consumer_name": ("consumer.name",),
    "consumer": ("consumer.name",),
    "claim_idle_ms": ("consumer.claim_idle_ms",),
    "max_deliveries": ("consumer.max_deliveries",),
    "max_dead_letters": ("consumer.max_dead_letters",),
    "max_retries": ("retry.max_retries",),
    "initial_backoff": ("retry.initial_backoff",),
    "max_backoff": ("retry.max_backoff",),
    "pipeline": ("pipeline",),
    "ops_host": ("ops.host",),
    "ops_port": ("ops.port",),
}
"""Keys both workers understand, and the settings each one sets."""


def settings_from_seed(
    config: Mapping[str, Any], model: type[S], keys: Mapping[str, tuple[str, ...]]
) -> S:
    """``model`` settings from the seed's flat ``config``; ``keys`` maps each key (beside
    :data:`REDIS_KEYS`) to the dotted settings paths it sets."""
    known = {*keys, *REDIS_KEYS}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(
            f"unknown {model.label} setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    data: dict[str, Any] = {}
    if config.get("redis_url") is not None:
        port, db = config.get("redis_port"), config.get("redis_db")
        username, password = config.get("redis_username"), config.get("redis_password")
        url = redis_url(
            str(config["redis_url"]),
            int(port) if port is not None else None,
            int(db) if db is not None else None,
            username=str(username) if username is not None else None,
            password=str(password) if password is not None else None,
        )
        set_dotted(data, "redis.url", url)
    for key, paths in keys.items():
        if config.get(key) is not None:
            for path in paths:
                set_dotted(data, path, config[key])
    return model.validate_settings(data)
