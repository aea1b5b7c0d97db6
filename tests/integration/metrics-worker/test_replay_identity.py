"""Dead-letter replay keeps exactly-once aggregation (issue 10, defect 3), on the real services.

The exactly-once ledger is keyed by the entry's identity: for a replayed entry, the entry it
first was. An entry whose batch was committed (the worker killed between COMMIT and XACK)
and that was dead-lettered later is counted once after its replay, not twice.
"""

from __future__ import annotations

import signal

import psycopg2
import pytest
from killkrill_command import killkrill
from pending import age_pending

from metrics_worker.worker import MetricsWorker

STREAM = "metrics-stream"
DEAD_LETTER = "metrics-stream:dead-letter"


def _ledger(database_url: str) -> list[str]:
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT entry_ms || '-' || entry_seq FROM metric_applied_entries")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


@pytest.mark.slow
def test_an_entry_applied_and_dead_lettered_is_counted_once_after_replay(
    redis_client,
    spawn_worker,
    add_samples,
    make_sample,
    totals,
    metrics_worker_config,
    redis_url,
    database_schema,
):
    [first_id] = add_samples(STREAM, [make_sample("replayed", 5)])
    crashed = spawn_worker("--batch-size", "10", env={"KILLKRILL_FAULT": "metrics.after_commit"})
    assert crashed.wait(30) == -signal.SIGKILL, crashed.output()
    assert totals() == {"replayed": (1, 5.0)}  # committed, never acked
    assert redis_client.xpending(STREAM, "metrics-worker")["pending"] == 1

    age_pending(redis_client, STREAM, "metrics-worker")  # its dead consumer's, long idle
    redelivering = {**metrics_worker_config, "max_deliveries": 1}
    with MetricsWorker(redelivering) as worker:
        result = worker.aggregate_batch(count=10)
        assert result.dead_lettered == 1
        assert "delivered 2 times" in result.errors[0]
        # Retention keeps the ledger row: the entry was acked (dead-lettered), but a replay
        # brings its identity back.
        worker.prune()
    assert _ledger(database_schema) == [first_id]

    out = killkrill(redis_url, "dlq", "replay", "--stream", "metrics", "--all")
    assert out.returncode == 0, out.stderr
    assert f"replayed 1 dead letter(s) from {DEAD_LETTER}; 0 left" in out.stdout
    [(new_id, fields)] = redis_client.xrange(STREAM)
    assert new_id.decode() != first_id
    assert fields[b"origin_id"] == first_id.encode()

    with MetricsWorker(metrics_worker_config) as worker:
        result = worker.aggregate_batch(count=10)
        duplicates = worker.instruments.duplicates.labels(STREAM)._value.get()
    assert result.success == 1
    assert duplicates == 1  # found in the ledger under its first identity
    assert totals() == {"replayed": (1, 5.0)}
    assert redis_client.xlen(STREAM) == 0
    assert redis_client.xpending(STREAM, "metrics-worker")["pending"] == 0


def test_a_refused_entry_replayed_after_the_fix_is_counted_once(
    redis_client, add_samples, make_sample, totals, metrics_worker_config, redis_url
):
    """Refused by the cardinality cap (dead-lettered, never applied); after the cap is
    raised, its replay is aggregated exactly once, and a second replay of the same letter
    (run concurrently, say) adds nothing."""
    add_samples(
        STREAM, [make_sample("capped", 1, {"k": "a"}), make_sample("capped", 2, {"k": "b"})]
    )
    with MetricsWorker({**metrics_worker_config, "max_series_per_metric": 1}) as worker:
        result = worker.aggregate_batch(count=10)
    assert (result.success, result.dead_lettered) == (1, 1)
    assert totals() == {"capped": (1, 1.0)}

    [(letter_id, _)] = redis_client.xrange(DEAD_LETTER)
    dry = killkrill(redis_url, "dlq", "replay", "--stream", "metrics", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 1 dead letter(s)" in dry.stdout
    assert redis_client.xlen(DEAD_LETTER) == 1
    out = killkrill(redis_url, "dlq", "replay", "--stream", "metrics", "--id", letter_id.decode())
    assert out.returncode == 0, out.stderr
    again = killkrill(redis_url, "dlq", "replay", "--stream", "metrics", "--id", letter_id.decode())
    assert "replayed 0 dead letter(s)" in again.stdout
    assert redis_client.xlen(STREAM) == 1

    with MetricsWorker(metrics_worker_config) as worker:
        assert worker.aggregate_batch(count=10).success == 1
    assert totals() == {"capped": (2, 3.0)}
    assert redis_client.xlen(STREAM) == 0
