"""The aggregates ``/metrics`` shows, read from PostgreSQL off the event loop.

:class:`AggregatesSnapshot` holds the newest bucket of every recent series, as of its last
successful refresh. In the long-running worker a thread of its own refreshes it every
``exposition.refresh_seconds``, over a connection of its own (application name
``killkrill-metrics-exposition``) whose statements are cancelled after
``exposition.query_timeout_seconds``; a scrape only reads the snapshot in memory. So a slow,
locked or stuck aggregates table can neither stall the event loop (the lanes, ``/healthz``,
``/readyz``) nor take a connection the writers need.

It is never a stale green without saying so:

* ``killkrill_metrics_worker_exposition_snapshot_age_seconds`` - seconds since the last
  successful refresh (``+Inf`` before the first one);
* ``killkrill_metrics_worker_exposition_refresh_failures_total`` - refreshes that failed
  (timed out, refused, connection lost), each also logged with the reason;
* a series leaves ``/metrics`` once its newest sample is older than
  ``exposition.max_age_seconds``, measured at the scrape, however old the snapshot is.

Without the refresher thread (the blocking API, scripts), :meth:`AggregatesSnapshot.rows`
refreshes inline when the snapshot is older than ``refresh_seconds``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.engine import Engine

from killkrill.db import create_engine
from killkrill.db.engine import error_summary
from killkrill.workers.metrics.instruments import Instruments

__all__ = [
    "EXPOSITION_APPLICATION_NAME",
    "AggregatesSnapshot",
    "exposition_engine",
    "latest_buckets",
]

log = logging.getLogger("killkrill.workers.metrics")

EXPOSITION_APPLICATION_NAME = "killkrill-metrics-exposition"
"""``application_name`` of the exposition's connection (see ``pg_stat_activity``)."""

_LATEST_SQL = text(
    """
    SELECT DISTINCT ON (name, labels_hash)
        name, labels, type, count, sum, min, max, last,
        extract(epoch FROM last_seen)::float8 AS last_seen,
        extract(epoch FROM now())::float8 AS read_at
    FROM aggregated_metrics
    WHERE pipeline = :pipeline
        AND last_seen >= now() - make_interval(secs => :max_age)
        -- a bucket is at most a day wide (ck_aggregated_metrics_bucket_seconds_max), so this
        -- bound on the indexed bucket_start keeps every row of the exact filter above
        AND bucket_start > now() - make_interval(secs => :max_age + 86400)
    ORDER BY name, labels_hash, bucket_start DESC, bucket_seconds
    """
)


def exposition_engine(url: str | SecretStr, *, query_timeout_seconds: float) -> Engine:
    """The exposition's own engine: one connection, statements cancelled after
    ``query_timeout_seconds`` (lock waits included), named in ``pg_stat_activity``."""
    timeout_ms = max(1, int(query_timeout_seconds * 1000))
    return create_engine(
        url,
        pool_size=1,
        max_overflow=0,
        pool_timeout=query_timeout_seconds,
        connect_args={
            "connect_timeout": max(1, math.ceil(query_timeout_seconds)),
            "application_name": EXPOSITION_APPLICATION_NAME,
            "options": f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}",
        },
    )


def latest_buckets(
    engine: Engine, max_age_seconds: float, pipeline: str = "default"
) -> list[dict[str, Any]]:
    """The newest bucket of every series of ``pipeline`` with a sample in the last
    ``max_age_seconds`` (blocking). Each row holds ``last_seen`` and the database's
    ``read_at`` in epoch seconds besides the aggregate."""
    with engine.connect() as conn:
        rows = (
            conn.execute(_LATEST_SQL, {"max_age": max_age_seconds, "pipeline": pipeline})
            .mappings()
            .all()
        )
    return [dict(row) for row in rows]


class AggregatesSnapshot:
    """The newest buckets as of the last successful refresh (see module doc). Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_age_seconds: float,
        refresh_seconds: float,
        instruments: Instruments,
        pipeline: str = "default",
    ) -> None:
        self.engine = engine
        self.pipeline = pipeline
        """Whose aggregates are exposed."""
        self.max_age_seconds = max_age_seconds
        self.refresh_seconds = refresh_seconds
        self.instruments = instruments
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self._rows: list[dict[str, Any]] = []
        self._taken: float | None = None
        """``time.monotonic()`` of the last successful refresh."""
        self._offset = 0.0
        """Database clock minus monotonic clock at that refresh (series ages use the
        database's clock, as the query's own filter does)."""
        self._overdue_logged = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        instruments.snapshot_age.set_function(self.age)

    # --- reading -----------------------------------------------------------------------------

    def age(self) -> float:
        """Seconds since the last successful refresh; ``inf`` before the first."""
        taken = self._taken
        return math.inf if taken is None else time.monotonic() - taken

    def rows(self) -> list[dict[str, Any]]:
        """The rows of series still recent *now* (newest sample within ``max_age_seconds``).

        Never touches the database while the refresher runs; without it, refreshes inline
        first when the snapshot is older than ``refresh_seconds``."""
        if not self.running and self.age() >= self.refresh_seconds:
            self.refresh()
        with self._lock:
            rows, taken, offset = self._rows, self._taken, self._offset
        if taken is None:
            return []
        age = time.monotonic() - taken
        if self.running and age > 2 * self.refresh_seconds and not self._overdue_logged:
            self._overdue_logged = True
            log.warning(
                "serving an aggregates snapshot %.0f s old: its refresh is overdue",
                age,
                extra={"snapshot_age_seconds": round(age, 1)},
            )
        cutoff = time.monotonic() + offset - self.max_age_seconds
        return [row for row in rows if row["last_seen"] >= cutoff]

    # --- refreshing ----------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Read the newest buckets (blocking). On failure the previous snapshot stays, the
        failure is counted and logged, and False is returned."""
        with self._refreshing:
            started = time.monotonic()
            try:
                rows = latest_buckets(self.engine, self.max_age_seconds, self.pipeline)
            except Exception as exc:
                self.instruments.refresh_failures.inc()
                log.warning(
                    "aggregates snapshot refresh failed: %s",
                    error_summary(exc),
                    extra={
                        "seconds": round(time.monotonic() - started, 3),
                        "snapshot_age_seconds": None
                        if self._taken is None
                        else round(self.age(), 1),
                    },
                )
                return False
            done = time.monotonic()
            read_at = float(rows[0]["read_at"]) if rows else time.time()
            with self._lock:
                self._rows, self._taken = rows, done
                # read_at is the transaction's start, about `started` on this clock
                self._offset = read_at - started
                self._overdue_logged = False
            return True

    @property
    def running(self) -> bool:
        """Whether the refresher thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the refresher thread (refreshes at once, then every ``refresh_seconds``)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="metrics-exposition-refresh", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the refresher; waits up to ``timeout`` for a refresh in progress (a stuck
        one is left to end with the process: its thread is a daemon)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self.refresh_seconds)
