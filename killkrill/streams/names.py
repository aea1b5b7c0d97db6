"""Stream key names and the fields of a stream entry."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DATA_FIELD", "SCHEMA_VERSION", "VERSION_FIELD", "StreamNames", "stream_names"]

DATA_FIELD = "data"
"""Entry field holding the record as JSON (the seed's shape)."""

VERSION_FIELD = "v"
"""Entry field holding the record schema version, so readers can evolve."""

SCHEMA_VERSION = "1"


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

    @staticmethod
    def dead_letter(stream: str) -> str:
        """Dead-letter stream of ``stream``: entries that can never succeed, with reasons."""
        return f"{stream}:dead-letter"


def stream_names(pipeline: str | None, key_prefix: str = "") -> StreamNames:
    """The one way to name a pipeline's streams from its settings: an explicit
    ``redis.key_prefix`` wins, else the pipeline's own prefix (none for ``default``).

    Call it as ``stream_names(settings.pipeline, settings.redis.key_prefix)``.
    """
    if key_prefix:
        return StreamNames(prefix=key_prefix)
    return StreamNames.for_pipeline(pipeline)
