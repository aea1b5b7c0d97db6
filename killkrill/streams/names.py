"""Stream key names and the fields of a stream entry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from killkrill.config.workers import LogWorkerSettings

__all__ = [
    "DATA_FIELD",
    "LOG_WORKER_GROUP",
    "METRICS_WORKER_GROUP",
    "ORIGIN_ID_FIELD",
    "ORIGIN_STREAM_FIELD",
    "SCHEMA_VERSION",
    "VERSION_FIELD",
    "StreamNames",
    "log_stream_key",
    "origin_of",
    "stream_names",
]

DATA_FIELD = "data"
"""Entry field holding the record as JSON (the seed's shape)."""

VERSION_FIELD = "v"
"""Entry field holding the record schema version, so readers can evolve."""

SCHEMA_VERSION = "1"

LOG_WORKER_GROUP = "log-worker"
"""Consumer group of the log workers (prefixed ``<pipeline>:`` but for ``default``)."""

METRICS_WORKER_GROUP = "metrics-worker"
"""Consumer group of the metrics workers on each metric stream (prefixed likewise)."""

ORIGIN_STREAM_FIELD = "origin_stream"
"""Entry field of a replayed entry: the stream its record first entered the pipeline on."""

ORIGIN_ID_FIELD = "origin_id"
"""Entry field of a replayed entry: the entry ID its record first had (on the origin stream)."""

_ORIGIN_STREAM = ORIGIN_STREAM_FIELD.encode()
_ORIGIN_ID = ORIGIN_ID_FIELD.encode()
_STREAM_ID = re.compile(rb"(?:0|[1-9][0-9]*)-(?:0|[1-9][0-9]*)")


def origin_of(fields: Mapping[bytes, bytes], stream: str, entry_id: str) -> tuple[str, str]:
    """The identity of the record an entry holds: ``(stream, entry id)`` of its first entry.

    A dead letter replayed onto its stream is a new entry with a new ID; its fields
    ``origin_stream``/``origin_id`` name the entry the record first had (kept through any
    number of replays). Sinks key their idempotent writes by this identity, so a replay
    overwrites, and never doubles, what an earlier delivery wrote. An entry without those
    fields (or with malformed ones, which only something else than a replay can write) is
    its own origin: ``(stream, entry_id)``.
    """
    origin_id = fields.get(_ORIGIN_ID)
    if origin_id is None:
        return stream, entry_id
    origin_stream = fields.get(_ORIGIN_STREAM)
    if not origin_stream or not _STREAM_ID.fullmatch(origin_id):
        return stream, entry_id
    return origin_stream.decode(errors="replace"), origin_id.decode()


@dataclass(frozen=True)
class StreamNames:
    """Stream keys of one pipeline. The default pipeline has an empty prefix and keeps the
    seed's names; another pipeline prefixes every key with ``<pipeline>:``."""

    prefix: str = ""

    @classmethod
    def for_pipeline(cls, pipeline: str | None) -> StreamNames:
        return cls(prefix=f"{pipeline}:" if pipeline and pipeline != "default" else "")

    @property
    def logs(self) -> str:
        return f"{self.prefix}logs-stream"

    @property
    def metrics(self) -> str:
        return f"{self.prefix}metrics-stream"

    def named(self, name: str) -> str:
        """A named metric stream: ``<name>-stream`` (``metrics`` is the default one)."""
        return f"{self.prefix}{name}-stream"

    def group(self, kind: str) -> str:
        """The consumer group of a worker kind (``log-worker``, ``metrics-worker``): one per
        kind, shared by its replicas; prefixed like the streams."""
        return f"{self.prefix}{kind}"

    @staticmethod
    def dead_letter(stream: str) -> str:
        """Dead-letter stream of ``stream``: entries that can never succeed, with reasons."""
        return f"{stream}:dead-letter"


def log_stream_key(settings: LogWorkerSettings) -> str:
    """The stream a log worker reads: ``stream`` if given, else the pipeline's log stream."""
    names = stream_names(settings.pipeline, settings.redis.key_prefix)
    return settings.stream or names.named(settings.log_stream)


def stream_names(pipeline: str | None, key_prefix: str = "") -> StreamNames:
    """The one way to name a pipeline's streams from its settings: an explicit
    ``redis.key_prefix`` wins, else the pipeline's own prefix (none for ``default``).

    Call it as ``stream_names(settings.pipeline, settings.redis.key_prefix)``.
    """
    if key_prefix:
        return StreamNames(prefix=key_prefix)
    return StreamNames.for_pipeline(pipeline)
