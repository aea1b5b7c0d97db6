"""The data-plane facts every worker exports as Prometheus metrics, under the same names.

``killkrill status`` and the operator read these facts from Redis directly
(:mod:`killkrill.health`); each worker also serves them on its ``/metrics``, so a
Prometheus alert can say the same thing:

* ``killkrill_stream_lag_entries{stream}`` - entries not yet delivered to the group;
* ``killkrill_stream_oldest_pending_seconds{stream}`` - age of the oldest unacknowledged entry;
* ``killkrill_dead_letter_entries{stream}`` - depth of the stream's dead-letter stream;
* ``killkrill_sink_last_success_timestamp_seconds{sink}`` - when this worker last wrote
  something its sink accepted (0 before the first).
"""

from __future__ import annotations

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Gauge

from killkrill.streams.facts import stream_facts
from killkrill.streams.heartbeat import WorkerActivity

__all__ = ["HealthGauges"]


class HealthGauges:
    """The four gauges above in ``registry``, for one worker's ``activity``."""

    def __init__(self, registry: CollectorRegistry, activity: WorkerActivity) -> None:
        self.lag = Gauge(
            "killkrill_stream_lag_entries",
            "Entries of the stream not yet delivered to the worker's consumer group.",
            ["stream"],
            registry=registry,
        )
        self.oldest_pending = Gauge(
            "killkrill_stream_oldest_pending_seconds",
            "Age of the oldest entry delivered to the group and not acknowledged (0: none).",
            ["stream"],
            registry=registry,
        )
        self.dead_letters = Gauge(
            "killkrill_dead_letter_entries",
            "Entries in the stream's dead-letter stream.",
            ["stream"],
            registry=registry,
        )
        last_success = Gauge(
            "killkrill_sink_last_success_timestamp_seconds",
            "Unix time this worker last wrote something its sink accepted (0: not yet).",
            ["sink"],
            registry=registry,
        )
        last_success.labels(activity.sink).set_function(lambda: activity.last_success_at or 0.0)

    async def refresh(self, client: aioredis.Redis, stream: str, group: str) -> None:
        """Read the facts of ``stream``/``group`` from Redis into the gauges."""
        facts = await stream_facts(client, stream, group)
        self.lag.labels(stream).set(facts.lag)
        self.oldest_pending.labels(stream).set(facts.oldest_pending_seconds)
        self.dead_letters.labels(stream).set(facts.dead_letters)
