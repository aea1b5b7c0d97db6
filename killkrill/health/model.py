"""The shapes of a health report: verdict names, thresholds, sinks, one pipeline's report.

:meth:`PipelineHealth.as_dict` is the JSON of ``killkrill status --json`` (one element of
``pipelines``): ``name``, ``verdict``, ``reason``, ``streams`` (``name``, ``length``,
``lag``, ``pending``, ``oldest_pending_seconds``, ``dead_letters``, ``consumers``, ...),
``workers`` and ``sinks``. Those names are an interface: more keys may come, none go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from killkrill.streams.facts import StreamFacts
from killkrill.streams.heartbeat import Heartbeat

__all__ = [
    "BACKLOGGED",
    "DEAD_LETTERING",
    "HEALTHY",
    "NO_DATA",
    "NO_WORKERS",
    "SINK_DEGRADED",
    "STALLED",
    "UNKNOWN",
    "VERDICTS",
    "PipelineHealth",
    "SinkHealth",
    "Thresholds",
]

HEALTHY = "Healthy"
BACKLOGGED = "Backlogged"
SINK_DEGRADED = "SinkDegraded"
STALLED = "Stalled"
DEAD_LETTERING = "DeadLettering"
NO_WORKERS = "NoWorkers"
NO_DATA = "NoData"
UNKNOWN = "Unknown"
VERDICTS = (
    HEALTHY,
    BACKLOGGED,
    SINK_DEGRADED,
    STALLED,
    DEAD_LETTERING,
    NO_WORKERS,
    NO_DATA,
    UNKNOWN,
)


@dataclass(frozen=True)
class Thresholds:
    """When the facts become a verdict other than ``Healthy``
    (see :mod:`killkrill.health.verdict`)."""

    lag_entries: int = 10_000
    """Entries not yet delivered at which a stream is ``Backlogged``."""
    waiting_seconds: float = 60.0
    """Age of the oldest undelivered entry at which a stream is ``Backlogged``."""
    stalled_seconds: float = 60.0
    """Entries waiting this long with nothing delivered meanwhile: ``Stalled``."""
    error_window_seconds: float = 60.0
    """A worker's sink error newer than its last success counts this long."""
    dead_letter_window_seconds: float = 300.0
    """A dead letter this recent makes the pipeline ``DeadLettering``."""
    no_data_seconds: float | None = None
    """Nothing appended for this long: ``NoData`` (None: never)."""


@dataclass(frozen=True)
class SinkHealth:
    """One sink as its probe and the workers' heartbeats see it."""

    name: str
    """``elasticsearch`` or ``postgres``."""
    state: str
    """``ok``, ``degraded`` (answers but is unwell, e.g. a red cluster), ``unreachable``
    or ``unknown`` (not probed)."""
    detail: str
    last_success_at: float | None = None
    """Newest time a live worker wrote to it successfully (None: none has)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "detail": self.detail,
            "last_success_at": self.last_success_at,
        }


@dataclass(frozen=True)
class PipelineHealth:
    """One pipeline's facts and verdict, as read at ``checked_at`` (Unix time)."""

    name: str
    verdict: str
    reason: str
    checked_at: float
    streams: list[StreamFacts] = field(default_factory=list)
    workers: list[Heartbeat] = field(default_factory=list)
    sinks: list[SinkHealth] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.verdict == HEALTHY

    @property
    def lag(self) -> int:
        """Entries waiting in every stream of the pipeline."""
        return sum(s.lag for s in self.streams)

    @property
    def dead_letters(self) -> int:
        return sum(s.dead_letters for s in self.streams)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict,
            "reason": self.reason,
            "checked_at": self.checked_at,
            "streams": [s.as_dict() for s in self.streams],
            "workers": [w.as_dict() for w in self.workers],
            "sinks": [s.as_dict() for s in self.sinks],
        }
