"""Retention of the metrics tables (real Redis + PostgreSQL): old buckets and series go,
and the exactly-once ledger keeps the row of every entry that may still be delivered, to
any consumer group, whoever prunes (`killkrill db prune` or the worker's schedule)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pending import age_pending

from killkrill.workers.metrics import MetricsWorker

STREAM = "metrics-stream"
FAULT = {"KILLKRILL_FAULT": "metrics.after_commit"}
DB_CLI = [sys.executable, "-m", "killkrill", "db"]


def _db_cli(*args: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = None
    if redis_url is not None:
        import os

        env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run([*DB_CLI, *args], capture_output=True, text=True, env=env, timeout=60)
    sys.stdout.write(done.stdout)  # where the leak guard reads it
    sys.stderr.write(done.stderr)
    return done


def _crash_after_commit(spawn_worker: Callable[..., Any], *args: str) -> None:
    """A worker that commits its first batch and is SIGKILLed before it acks it."""
    crashed = spawn_worker("--batch-size", "50", *args, env=FAULT)
    assert crashed.wait(30) == -signal.SIGKILL, crashed.output()


def _redeliver(config: dict[str, Any], client: redis.Redis, group: str) -> int:
    """Another consumer of ``group`` takes the pending entries over; returns how many of them
    it reports delivered."""
    age_pending(client, STREAM, group)  # its consumer died an hour ago
    with MetricsWorker({**config, "group": group}) as worker:
        result = worker.aggregate_batch(count=100)
    assert client.xpending(STREAM, group)["pending"] == 0
    return int(result.success)


@pytest.mark.integration
def test_retention_prunes_old_buckets_series_and_spent_ledger_rows(
    redis_client, metrics_worker, add_samples, make_sample, totals, database_schema
):
    old, now = time.time() - 30 * 86_400, time.time()
    add_samples(
        STREAM,
        [make_sample("retained", 1, {"age": "old"}, ts=old), make_sample("retained", 2, ts=now)],
    )
    assert metrics_worker.aggregate_batch()["success"] == 2

    result = metrics_worker.prune()  # 7 days by default; everything above was acked

    assert (result.buckets, result.series, result.ledger) == (1, 1, 2)
    assert totals() == {"retained": (1, 2.0)}


@pytest.mark.integration
def test_db_cli_upgrade_and_prune(
    database_schema, redis_url, metrics_worker, add_samples, make_sample, totals
):
    url = ["--database-url", database_schema]
    up = _db_cli("upgrade", *url)
    assert up.returncode == 0, up.stderr
    again = _db_cli("upgrade", *url)  # idempotent
    assert again.returncode == 0, again.stderr
    current = _db_cli("current", *url)
    m = re.fullmatch(r"(\S+) \(head (\S+)\)\n", current.stdout)
    assert m is not None and m.group(1) == m.group(2), current.stdout
    add_samples(
        STREAM,
        [
            make_sample("cli_pruned", 1, ts=time.time() - 3 * 86_400),
            make_sample("cli_kept", 2, ts=time.time()),
        ],
    )
    metrics_worker.aggregate_batch()

    pruned = _db_cli("prune", "--older-than", "2d", *url, redis_url=redis_url)

    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 1 bucket(s), 1 series" in pruned.stdout
    assert totals() == {"cli_kept": (1, 2.0)}


@pytest.mark.integration
@pytest.mark.slow
def test_db_prune_keeps_ledger_rows_of_entries_still_pending(
    redis_client, redis_url, spawn_worker, make_sample, totals, metrics_worker_config
):
    """Entries three days old, applied and committed by a worker that died before acking
    them: `db prune --older-than 2d` must keep their ledger rows, so the consumer that
    takes them over finds them applied and counts nothing twice."""
    old_ms = int((time.time() - 3 * 86_400) * 1000)
    for seq, value in enumerate((1, 2, 3, 4, 5)):
        redis_client.xadd(
            STREAM, {"data": make_sample("pending_old", value), "v": "1"}, id=f"{old_ms}-{seq}"
        )
    _crash_after_commit(spawn_worker)
    assert totals() == {"pending_old": (5, 15.0)}
    assert redis_client.xpending(STREAM, "metrics-worker")["pending"] == 5

    pruned = _db_cli(
        "prune",
        "--older-than",
        "2d",
        "--database-url",
        metrics_worker_config["database_url"],
        redis_url=redis_url,
    )
    assert pruned.returncode == 0, pruned.stderr

    assert _redeliver(metrics_worker_config, redis_client, "metrics-worker") == 5
    assert totals() == {"pending_old": (5, 15.0)}
    assert redis_client.xlen(STREAM) == 0


@pytest.mark.integration
@pytest.mark.slow
def test_scheduled_pruning_keeps_ledger_rows_pending_in_another_group(
    redis_client,
    spawn_worker,
    add_samples,
    make_sample,
    totals,
    metrics_worker_config,
    metrics_worker,
):
    """Two consumer groups read the stream: `replica-b` committed its batch and died before
    acking; the worker's own group was created at the stream's end (``XGROUP CREATE ... $``)
    so it is past those entries. Its pruning must still keep their ledger rows."""
    add_samples(STREAM, [make_sample("other_group", v) for v in (1, 2, 3)])
    _crash_after_commit(spawn_worker, "--consumer-group", "replica-b")
    redis_client.xgroup_create(STREAM, "metrics-worker", id="$")
    assert totals() == {"other_group": (3, 6.0)}

    metrics_worker.prune()

    assert _redeliver(metrics_worker_config, redis_client, "replica-b") == 3
    assert totals() == {"other_group": (3, 6.0)}


@pytest.mark.integration
def test_db_prune_without_redis_deletes_nothing_and_says_why(
    database_schema, metrics_worker, add_samples, make_sample, totals
):
    """The pending entries live in Redis: with Redis unreachable, `db prune` refuses
    (non-zero exit, the reason named) instead of guessing, and deletes nothing."""
    add_samples(STREAM, [make_sample("unpruned", 1, ts=time.time() - 3 * 86_400)])
    metrics_worker.aggregate_batch()

    pruned = _db_cli(
        "prune",
        "--older-than",
        "2d",
        "--database-url",
        database_schema,
        redis_url="redis://127.0.0.1:1/0",
    )

    assert pruned.returncode != 0
    assert "Redis" in pruned.stderr and "127.0.0.1:1" in pruned.stderr
    assert totals() == {"unpruned": (1, 1.0)}
