"""The seed's flat ``LogWorker(config)`` dict, translated into :class:`LogWorkerSettings`,
and the names derived from the settings (stream, dead-letter stream, group, consumer)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from killkrill.config import LogWorkerSettings
from killkrill.streams.consumer import default_consumer_name
from killkrill.streams.names import LOG_WORKER_GROUP, StreamNames, log_stream_key, stream_names
from killkrill.workers.seed import COMMON_KEYS
from killkrill.workers.seed import settings_from_seed as seed_settings

__all__ = ["SEED_KEYS", "LogWorkerNames", "settings_from_seed"]

SEED_KEYS: dict[str, tuple[str, ...]] = {
    **COMMON_KEYS,
    "timeout": ("elasticsearch.request_timeout", "redis.socket_timeout"),
    "elasticsearch_url": ("elasticsearch.url",),
    "elasticsearch_index": ("elasticsearch.index_prefix",),
    "environment": ("transform.environment",),
    "version": ("transform.version",),
    "drop_fields": ("transform.drop_fields",),
    "rename_fields": ("transform.rename_fields",),
    "stream": ("stream",),
    "dead_letter_stream": ("dead_letter_stream",),
    "install_template": ("install_template",),
    "number_of_replicas": ("number_of_replicas",),
}
"""Seed config keys of the log worker and the settings each sets (beside ``redis_url``,
``redis_port``, ``redis_db``): ``timeout`` is the seconds one Elasticsearch or Redis call
may take, ``elasticsearch_index`` the index prefix."""


def settings_from_seed(config: Mapping[str, Any]) -> LogWorkerSettings:
    """Settings from the seed's flat dict (see :mod:`killkrill.workers.seed`)."""
    return seed_settings(config, LogWorkerSettings, SEED_KEYS)


@dataclass(frozen=True)
class LogWorkerNames:
    """The Redis names one log worker uses."""

    stream: str
    dead_letter_stream: str
    group: str
    consumer: str

    @classmethod
    def from_settings(cls, settings: LogWorkerSettings) -> LogWorkerNames:
        names = stream_names(settings.pipeline, settings.redis.key_prefix)
        stream = log_stream_key(settings)
        return cls(
            stream=stream,
            dead_letter_stream=settings.dead_letter_stream or StreamNames.dead_letter(stream),
            group=settings.consumer.group or names.group(LOG_WORKER_GROUP),
            consumer=settings.consumer.name or default_consumer_name(),
        )
