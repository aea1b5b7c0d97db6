"""The seed's flat ``LogWorker(config)`` dict, translated into :class:`LogWorkerSettings`,
and the names derived from the settings (stream, dead-letter stream, group, consumer)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from killkrill.config import LogWorkerSettings, set_dotted
from killkrill.errors import ConfigError
from killkrill.streams.connection import redis_url
from killkrill.streams.consumer import default_consumer_name
from killkrill.streams.names import StreamNames

__all__ = ["SEED_KEYS", "LogWorkerNames", "settings_from_seed"]

SEED_KEYS: dict[str, str] = {
    "redis_url": "",
    "redis_port": "",
    "redis_db": "",
    "timeout": "",
    "elasticsearch_url": "elasticsearch.url",
    "elasticsearch_index": "elasticsearch.index_prefix",
    "batch_size": "consumer.batch_size",
    "block_ms": "consumer.block_ms",
    "consumer_group": "consumer.group",
    "consumer_name": "consumer.name",
    "claim_idle_ms": "consumer.claim_idle_ms",
    "max_deliveries": "consumer.max_deliveries",
    "max_dead_letters": "consumer.max_dead_letters",
    "max_retries": "retry.max_retries",
    "initial_backoff": "retry.initial_backoff",
    "max_backoff": "retry.max_backoff",
    "environment": "transform.environment",
    "version": "transform.version",
    "drop_fields": "transform.drop_fields",
    "rename_fields": "transform.rename_fields",
    "ops_host": "ops.host",
    "ops_port": "ops.port",
    "pipeline": "pipeline",
    "stream": "stream",
    "dead_letter_stream": "dead_letter_stream",
    "install_template": "install_template",
    "number_of_replicas": "number_of_replicas",
}
"""Seed config keys and where each goes in :class:`LogWorkerSettings` ("" = handled apart)."""


def settings_from_seed(config: Mapping[str, Any]) -> LogWorkerSettings:
    """Settings from the seed's flat dict.

    ``redis_url`` is a host (with ``redis_port``, default 6379, and ``redis_db``, default 0,
    beside it) or a full ``redis://`` URL; ``elasticsearch_index`` is the index prefix;
    ``timeout`` is the seconds one Elasticsearch or Redis call may take. The other keys are
    listed in :data:`SEED_KEYS`. Unknown keys raise :class:`ConfigError` so typos do not pass
    silently.
    """
    unknown = sorted(set(config) - set(SEED_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown log worker setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(SEED_KEYS))}"
        )
    data: dict[str, Any] = {}
    for key, path in SEED_KEYS.items():
        if path and config.get(key) is not None:
            set_dotted(data, path, config[key])
    if config.get("redis_url") is not None:
        port, db = config.get("redis_port"), config.get("redis_db")
        url = redis_url(
            str(config["redis_url"]),
            int(port) if port is not None else None,
            int(db) if db is not None else None,
        )
        set_dotted(data, "redis.url", url)
    if config.get("timeout") is not None:
        set_dotted(data, "elasticsearch.request_timeout", config["timeout"])
        set_dotted(data, "redis.socket_timeout", config["timeout"])
    return LogWorkerSettings.validate_settings(data)


@dataclass(frozen=True)
class LogWorkerNames:
    """The Redis names one log worker uses."""

    stream: str
    dead_letter_stream: str
    group: str
    consumer: str

    @classmethod
    def from_settings(cls, settings: LogWorkerSettings) -> LogWorkerNames:
        stream = settings.stream or StreamNames.for_pipeline(settings.pipeline).logs
        return cls(
            stream=stream,
            dead_letter_stream=settings.dead_letter_stream or StreamNames.dead_letter(stream),
            group=settings.consumer.group or "log-worker",
            consumer=settings.consumer.name or default_consumer_name(),
        )
