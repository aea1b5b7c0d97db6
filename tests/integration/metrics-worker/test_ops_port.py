"""The ops port of a running metrics worker while the aggregates cannot be read (real
Redis + PostgreSQL, real faults: a table lock held by a second connection, a stopped
PostgreSQL backend).

``/metrics`` serves the aggregates from a snapshot refreshed in a thread, so a slow or
stuck exposition query stalls neither the probes nor the lanes; the snapshot's age is
exposed and every failed refresh counted and logged.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest

SCRAPE_AGE = "killkrill_metrics_worker_exposition_snapshot_age_seconds"
REFRESH_FAILURES = "killkrill_metrics_worker_exposition_refresh_failures_total"


def _get(url: str, timeout: float) -> tuple[int, str, float]:
    """(status, body, seconds); status 0 when no answer came within ``timeout``."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status, body = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read().decode()
    except OSError as exc:
        status, body = 0, repr(exc)
    return status, body, time.monotonic() - started


def _value(text: str, name: str) -> float | None:
    """The value of the unlabelled sample ``name`` in a Prometheus text body."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else None


def _waiting_reader(url: str) -> int | None:
    """PID of a backend waiting to *read* ``aggregated_metrics`` (the exposition query:
    writers wait for a RowExclusiveLock, a SELECT for an AccessShareLock)."""
    conn = psycopg2.connect(url, connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_locks WHERE relation = 'aggregated_metrics'::regclass "
                "AND mode = 'AccessShareLock' AND NOT granted AND pid <> pg_backend_pid()"
            )
            row = cur.fetchone()
    finally:
        conn.close()
    return int(row[0]) if row else None


@pytest.fixture
def table_lock(database_schema: str) -> Iterator[Callable[[], None]]:
    """Holds ``LOCK TABLE aggregated_metrics IN ACCESS EXCLUSIVE MODE`` from a second
    connection until the returned function (or the end of the test) releases it."""
    conn = psycopg2.connect(database_schema)
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE aggregated_metrics IN ACCESS EXCLUSIVE MODE")

    def release() -> None:
        if not conn.closed:
            conn.rollback()
            conn.close()

    yield release
    release()


@pytest.fixture
def ops_worker(spawn_worker, free_port, wait_until, add_samples, make_sample) -> Iterator[Any]:
    """A worker on two streams (`metrics`, `other`) whose /metrics already shows one
    aggregate; yields (base URL, process)."""
    port = free_port()
    worker = spawn_worker("--ops-port", str(port), "--stream", "metrics", "--stream", "other")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _get(f"{base}/readyz", 2)[0] == 200, 30, "worker ready")
    add_samples("metrics-stream", [make_sample("before_fault", 4.0, type="gauge")])
    wait_until(
        lambda: "before_fault 4.0" in _get(f"{base}/metrics", 5)[1], 30, "the aggregate shown"
    )
    yield base, worker
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0, worker.output()


def _scrape_in_background(base: str) -> threading.Thread:
    """One GET /metrics in a thread (it triggers the exposition query where a scrape does)."""
    thread = threading.Thread(target=_get, args=(f"{base}/metrics", 120), daemon=True)
    thread.start()
    return thread


def _assert_probes_prompt(base: str) -> None:
    for path in ("/healthz", "/readyz"):
        status, body, seconds = _get(f"{base}{path}", 2.0)
        assert status == 200, f"{path} answered {status} {body!r} after {seconds:.1f}s"
        assert seconds < 2.0


@pytest.mark.integration
@pytest.mark.slow
def test_probes_and_metrics_answer_while_the_aggregates_table_is_locked(
    ops_worker, table_lock, wait_until, database_schema
):
    """A second connection holds an ACCESS EXCLUSIVE lock on the aggregates: the probes and
    /metrics still answer at once (the last snapshot, its age rising), and the refresh that
    timed out is counted and logged. Released, the snapshot is fresh again."""
    base, worker = ops_worker
    _scrape_in_background(base)
    wait_until(lambda: _waiting_reader(database_schema), 20, "the exposition query waiting")

    for _ in range(3):
        _assert_probes_prompt(base)
    status, text, seconds = _get(f"{base}/metrics", 2.0)
    assert (status, seconds < 2.0) == (200, True)
    assert "before_fault 4.0" in text  # the snapshot taken before the lock

    def failures() -> float:
        value = _value(_get(f"{base}/metrics", 2.0)[1], REFRESH_FAILURES)
        return value or 0.0

    wait_until(lambda: failures() >= 1, 30, "a failed refresh counted")
    assert "aggregates snapshot refresh failed" in worker.output()
    age = _value(_get(f"{base}/metrics", 2.0)[1], SCRAPE_AGE)
    assert age is not None and age > 0

    table_lock()
    from killkrill.config.workers import ExpositionSettings

    interval = ExpositionSettings().refresh_seconds
    wait_until(
        lambda: (
            (a := _value(_get(f"{base}/metrics", 2.0)[1], SCRAPE_AGE)) is not None and a < interval
        ),
        4 * interval + 10,
        "a fresh snapshot after the lock is released",
    )


@pytest.mark.integration
@pytest.mark.slow
def test_lanes_keep_aggregating_while_the_exposition_query_is_stuck(
    ops_worker, table_lock, wait_until, database_schema, add_samples, make_sample, totals
):
    """The backend running the exposition query is stopped (SIGSTOP) while it waits for the
    locked table; the lock is then released. Batches of another stream are aggregated
    meanwhile and the probes answer; /metrics says how old its snapshot is. Once the
    backend runs again the snapshot catches up."""
    base, _ = ops_worker
    _scrape_in_background(base)
    pid = wait_until(lambda: _waiting_reader(database_schema), 20, "the exposition query waiting")
    os.kill(pid, signal.SIGSTOP)
    try:
        table_lock()  # writers may go on; the stopped reader never answers
        add_samples("other-stream", [make_sample("during_stall", v) for v in (1, 2, 3)])
        wait_until(
            lambda: totals().get("during_stall") == (3, 6.0), 30, "the other stream aggregated"
        )
        _assert_probes_prompt(base)
        from killkrill.config.workers import ExpositionSettings

        interval = ExpositionSettings().refresh_seconds
        wait_until(
            lambda: (
                (a := _value(_get(f"{base}/metrics", 2.0)[1], SCRAPE_AGE)) is not None
                and a > 2 * interval
            ),
            4 * interval + 10,
            "the snapshot's age showing the refresh overdue",
        )
        status, text, _ = _get(f"{base}/metrics", 2.0)
        assert status == 200
        assert "before_fault 4.0" in text and "during_stall" not in text
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(
        lambda: "during_stall 3.0" in _get(f"{base}/metrics", 2.0)[1],
        4 * interval + 10,
        "the snapshot caught up once the backend runs again",
    )
