"""Failures on the way to Elasticsearch, against the real services: nothing lost, nothing doubled.

Faults are injected for real: a closed port (connection refused), index write blocks
(Elasticsearch answers per item with 429/403), ``SIGSTOP`` of the Elasticsearch process
(the client times out), a document over Elasticsearch's request size limit (413), stopping
and starting Elasticsearch, and ``SIGKILL`` of a worker process.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request

import pytest
from click.testing import CliRunner
from log_worker_helpers import (
    DEAD_LETTER,
    GROUP,
    STREAM,
    es_count,
    free_port,
    make_log,
    pending_count,
)
from pending import QUICK_RECLAIM_ENV, QUICK_RECLAIM_MS, age_pending
from polling import wait_for
from run_names import ES_INDEX_PREFIX

from killkrill.cli.main import cli
from log_worker.worker import LogWorker

# --- the seed guide's tests --------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
def test_worker_retries_on_elasticsearch_timeout(
    redis_client, elasticsearch_client, log_worker_config, managed_elasticsearch
):
    """Worker should retry on temporary service failures: Elasticsearch frozen with SIGSTOP,
    the first _bulk times out for real; after SIGCONT a retry succeeds - at least two
    attempts and exactly one document."""
    config = {**log_worker_config, "timeout": 1, "initial_backoff": 0.5, "max_backoff": 1}
    with LogWorker(config) as worker:
        worker.process_batch(count=1)  # template installed, connections open
        test_log = {
            "timestamp": "2024-01-06T12:00:00Z",
            "service": "api",
            "level": "info",
            "message": "retried once",
        }
        redis_client.xadd("logs-stream", {"data": json.dumps(test_log)})
        pid = managed_elasticsearch.pid()
        os.kill(pid, signal.SIGSTOP)
        resume = threading.Timer(1.5, os.kill, (pid, signal.SIGCONT))  # the outage's length
        resume.start()
        try:
            result = worker.process_batch(count=1, max_retries=5)
        finally:
            resume.cancel()
            os.kill(pid, signal.SIGCONT)

    assert result.attempts >= 2
    assert result.retries >= 1
    assert result["success"] == 1
    assert es_count(elasticsearch_client) == 1  # exactly one document
    assert redis_client.xlen("logs-stream") == 0


@pytest.mark.integration
def test_worker_handles_partial_failures(redis_client, log_worker):
    """Worker should handle partial batch failures gracefully"""
    # Setup: Mix of valid and invalid logs
    logs = [
        {
            "timestamp": "2024-01-06T12:00:00Z",
            "service": "api",
            "level": "info",
            "message": "valid",
        },
        {"invalid": "log"},  # Invalid
        {
            "timestamp": "2024-01-06T12:00:02Z",
            "service": "api",
            "level": "error",
            "message": "valid",
        },
    ]

    for log in logs:
        redis_client.xadd("logs-stream", {"data": json.dumps(log)})

    # Execute: Process all logs
    results = log_worker.process_batch(count=3, stop_on_error=False)

    # Verify: 2 succeeded, 1 failed
    assert results["success"] == 2
    assert results["failed"] == 1


# --- retries, pending, redelivery --------------------------------------------------------------


def _index_ready(es, *days):
    """Create the daily indices (default: the one of make_log()'s records) and wait until
    they take writes, so a short request timeout never meets an index being created."""
    names = [f"{ES_INDEX_PREFIX}-{day}" for day in days or ("2024.01.06",)]
    for name in names:
        es.indices.create(index=name)
    es.cluster.health(index=",".join(names), wait_for_status="yellow", timeout="30s")
    return names[0]


def test_exhausted_retries_leave_entries_pending_then_they_come_back(
    redis_client, elasticsearch_client, log_worker_config, add_logs
):
    """Elasticsearch unreachable (a closed port): every attempt fails, the entries are left
    pending, unacknowledged, none dead-lettered; once it is reachable they are reclaimed
    and indexed, each exactly once."""
    _index_ready(elasticsearch_client)
    add_logs(5)
    closed = f"http://127.0.0.1:{free_port()}"
    broken = {**log_worker_config, "elasticsearch_url": closed, "install_template": False,
              "consumer_name": "first", "initial_backoff": 0.01}  # fmt: skip
    with LogWorker(broken) as worker:
        result = worker.process_batch(count=5, max_retries=2)
    assert (result["success"], result["failed"], result.pending) == (0, 5, 5)
    assert (result.attempts, result.retries) == (3, 2)  # first try + 2 retries
    assert "unreachable" in result.errors[-1]
    assert redis_client.xlen(STREAM) == 5  # nothing acked
    assert pending_count(redis_client) == 5
    assert redis_client.xlen(DEAD_LETTER) == 0
    # Elasticsearch reachable, the first worker gone for an hour: its pending entries are
    # reclaimed by another one, and indexed.
    age_pending(redis_client, STREAM, GROUP)
    with LogWorker({**log_worker_config, "consumer_name": "second"}) as worker:
        assert worker.process_batch(count=5)["success"] == 5
    assert es_count(elasticsearch_client) == 5
    assert pending_count(redis_client) == 0
    assert redis_client.xlen(STREAM) == 0


@pytest.mark.parametrize(
    ("block", "status"),
    [("index.blocks.read_only_allow_delete", 429), ("index.blocks.write", 403)],
)
def test_per_item_retryable_errors_are_not_acked(
    redis_client, elasticsearch_client, log_worker_config, add_logs, block, status
):
    """Real per-item failures: an index under a write block answers each item with 429
    (flood-stage block) or 403; those entries stay pending until the block is lifted."""
    index = _index_ready(elasticsearch_client, "2024.01.06", "2024.01.07")
    elasticsearch_client.indices.put_settings(index=index, settings={block: True})
    add_logs(3)
    add_logs(1, start=3, timestamp="2024-01-07T00:00:00Z")  # another day: not blocked
    try:
        with LogWorker({**log_worker_config, "max_retries": 0}) as worker:
            result = worker.process_batch(count=4)
            assert (result["success"], result.pending) == (1, 3)
            assert f"elasticsearch {status}" in result.errors[-1]
            assert pending_count(redis_client) == 3
            elasticsearch_client.indices.put_settings(index=index, settings={block: None})
        age_pending(redis_client, STREAM, GROUP)  # the worker gone for an hour
        with LogWorker(log_worker_config) as worker:  # its successor takes them over
            assert worker.process_batch(count=10)["success"] == 3
    finally:
        elasticsearch_client.indices.put_settings(index=index, settings={block: None})
    assert es_count(elasticsearch_client) == 5 - 1
    assert redis_client.xlen(STREAM) == 0
    assert redis_client.xlen(DEAD_LETTER) == 0


@pytest.mark.slow
def test_a_document_over_the_request_size_limit_does_not_sink_its_batch(
    redis_client, elasticsearch_client, log_worker_config, add_logs
):
    """One log over Elasticsearch's request limit (http.max_content_length, 100 MB) among
    ten: the request answered 413 is split until the giant is alone; it is dead-lettered
    with the reason, the ten others are indexed exactly once."""
    add_logs(5)
    giant = json.dumps(make_log(5, message="x" * (101 * 1024 * 1024)))
    [giant_id] = [redis_client.xadd(STREAM, {"data": giant}).decode()]
    add_logs(5, start=6)
    with LogWorker({**log_worker_config, "batch_size": 20}) as worker:
        result = worker.process_batch(count=20)
    assert (result["success"], result.dead_lettered, result.pending) == (10, 1, 0)
    assert result.attempts > 2  # split
    hits, seqs = _all_seqs(elasticsearch_client)
    assert (hits, sorted(seqs)) == (10, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10])
    [(_, letter)] = redis_client.xrange(DEAD_LETTER)
    assert letter[b"source_id"].decode() == giant_id
    assert b"elasticsearch 413" in letter[b"reason"]
    assert letter[b"data"] == giant.encode()
    assert redis_client.xlen(STREAM) == 0


# --- poison in a large batch, dead-letter replay -----------------------------------------------


def test_poison_in_a_large_batch_then_replay_after_the_fix(
    redis_client, elasticsearch_client, log_worker_config, redis_url
):
    """One record whose field conflicts with the mapping, in the middle of 1,000: the 999
    others are indexed, the poison is dead-lettered with Elasticsearch's reason; after the
    fix (a rename in the worker's config) ``killkrill dlq replay`` indexes it exactly once."""
    with redis_client.pipeline(transaction=False) as pipe:
        for i in range(1000):
            duration = "very slow" if i == 500 else i  # `duration` is mapped as long
            pipe.xadd(STREAM, {"data": json.dumps(make_log(i, duration=duration))})
        pipe.execute()
    config = {**log_worker_config, "batch_size": 100}
    with LogWorker(config) as worker:
        result = worker.process_batch(count=1000)
    assert (result["success"], result.dead_lettered, result.pending) == (999, 1, 0)
    assert es_count(elasticsearch_client) == 999
    assert redis_client.xlen(STREAM) == 0

    runner = CliRunner()
    listed = runner.invoke(cli, ["dlq", "list", "--redis-url", redis_url, "--json"])
    assert listed.exit_code == 0, listed.output
    [letter] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert json.loads(letter["data"])["seq"] == 500
    assert "elasticsearch 400" in letter["reason"]
    assert "duration" in letter["reason"]
    assert letter["source_stream"] == STREAM

    replayed = runner.invoke(cli, ["dlq", "replay", "--redis-url", redis_url, "--all"])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 dead letter(s)" in replayed.stdout
    assert redis_client.xlen(DEAD_LETTER) == 0
    fixed = {**config, "rename_fields": {"duration": "duration_text"}}
    with LogWorker(fixed) as worker:
        assert worker.process_batch(count=10)["success"] == 1
    assert es_count(elasticsearch_client) == 1000
    assert es_count(elasticsearch_client, query={"term": {"seq": 500}}) == 1
    assert redis_client.xlen(STREAM) == 0
    assert redis_client.xlen(DEAD_LETTER) == 0


# --- the long-running process: SIGTERM, SIGKILL, Elasticsearch outages -------------------------


def _fill(redis_client, n, start=0):
    with redis_client.pipeline(transaction=False) as pipe:
        for i in range(start, start + n):
            pipe.xadd(STREAM, {"data": json.dumps(make_log(i))})
        pipe.execute()


def _all_seqs(es):
    es.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")
    resp = es.search(
        index=f"{ES_INDEX_PREFIX}-*", size=10_000, source=["seq"], query={"match_all": {}},
        track_total_hits=True,
    )  # fmt: skip
    return resp["hits"]["total"]["value"], [h["_source"]["seq"] for h in resp["hits"]["hits"]]


def _get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _drain_then_stop(redis_client, worker, timeout, what):
    """Wait until the stream and the group's pending list are empty, then SIGTERM: exit 0."""
    wait_for(
        lambda: redis_client.xlen(STREAM) == 0 and pending_count(redis_client) == 0,
        timeout,
        what,
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


@pytest.mark.slow
def test_sigterm_finishes_the_batch_in_flight_and_exits_0(
    redis_client, elasticsearch_client, start_worker
):
    _fill(redis_client, 3000)
    worker = start_worker("graceful", "--batch-size", "100")
    wait_for(lambda: redis_client.xlen(STREAM) < 2500, 30, "the worker to index some logs")
    status, body = _get(worker.ops_port, "/healthz")
    assert status == 200
    status, body = _get(worker.ops_port, "/readyz")
    assert status == 200, body
    status, metrics = _get(worker.ops_port, "/metrics")
    assert status == 200
    assert "killkrill_log_worker_indexed_total" in metrics
    assert "killkrill_log_worker_batch_duration_seconds_bucket" in metrics

    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert pending_count(redis_client) == 0  # the batch in flight was acked
    left = redis_client.xlen(STREAM)
    assert es_count(elasticsearch_client) == 3000 - left
    messages = [line.get("msg") for line in worker.log_lines()]
    assert "log worker started" in messages
    assert "log worker stopped" in messages


@pytest.mark.slow
def test_sigkill_mid_indexing_then_restart_loses_and_doubles_nothing(
    redis_client, elasticsearch_client, start_worker
):
    """10,000 logs; the worker is killed with SIGKILL while indexing; another consumer
    takes over its pending entries: every log indexed once, stream and PEL empty."""
    total = 10_000
    _fill(redis_client, total)
    first = start_worker("doomed", "--batch-size", "250")
    wait_for(lambda: redis_client.xlen(STREAM) <= total - 2000, 60, "2,000 logs acked")
    first.signal(signal.SIGKILL)
    first.wait(timeout=10)
    left = redis_client.xlen(STREAM)
    assert 0 < left < total, "the kill must land mid-indexing"

    second = start_worker(
        "heir", "--batch-size", "250", "--claim-idle-ms", QUICK_RECLAIM_MS, env=QUICK_RECLAIM_ENV
    )
    _drain_then_stop(
        redis_client,
        second,
        90,
        "the second worker to drain the stream and the first one's pending entries",
    )

    hits, seqs = _all_seqs(elasticsearch_client)
    assert hits == total
    assert sorted(seqs) == list(range(total))  # every log, none twice
    consumers = {c["name"]: c["pending"] for c in redis_client.xinfo_consumers(STREAM, GROUP)}
    assert consumers.get(b"doomed", 0) == 0


@pytest.mark.slow
def test_elasticsearch_down_then_back_loses_nothing(
    redis_client, elasticsearch_client, start_worker, managed_elasticsearch
):
    """Elasticsearch stopped while logs keep coming: nothing is acked meanwhile; once it is
    back the backlog (and what was pending) drains, every log exactly once."""
    _fill(redis_client, 500)
    worker = start_worker(
        "outage",
        "--batch-size", "100",
        "--claim-idle-ms", QUICK_RECLAIM_MS,
        env={**QUICK_RECLAIM_ENV, "KILLKRILL_RETRY__MAX_BACKOFF": "1"},
    )  # fmt: skip
    wait_for(lambda: redis_client.xlen(STREAM) == 0, 30, "the first 500 logs")
    managed_elasticsearch.stop()
    try:
        _fill(redis_client, 500, start=500)
        wait_for(lambda: pending_count(redis_client) > 0, 30, "a batch to fail")
        time.sleep(1.0)  # the outage goes on for a while
        assert redis_client.xlen(STREAM) == 500  # nothing acked while Elasticsearch is down
        assert _get(worker.ops_port, "/readyz")[0] == 503
    finally:
        managed_elasticsearch.start()
    _drain_then_stop(redis_client, worker, 60, "the backlog to drain after Elasticsearch came back")
    hits, seqs = _all_seqs(elasticsearch_client)
    assert hits == 1000
    assert sorted(seqs) == list(range(1000))
    assert redis_client.xlen(DEAD_LETTER) == 0


def test_dlq_cli_replays_chosen_ids_and_refuses_bad_ones(redis_client, log_worker, redis_url):
    for payload in (b"{one", b"{two"):
        redis_client.xadd(STREAM, {"data": payload})
    assert log_worker.process_batch(count=5, stop_on_error=False)["dead_lettered"] == 2
    first_id = redis_client.xrange(DEAD_LETTER)[0][0].decode()
    runner = CliRunner()
    out = runner.invoke(cli, ["dlq", "replay", "--redis-url", redis_url, "--id", first_id])
    assert out.exit_code == 0, out.output
    assert "replayed 1 dead letter(s) from logs-stream:dead-letter; 1 left" in out.stdout
    [(_, fields)] = redis_client.xrange(STREAM)
    assert fields[b"data"] == b"{one"  # byte for byte, back on its source stream
    bad = runner.invoke(cli, ["dlq", "replay", "--redis-url", redis_url, "--id", "nope"])
    assert bad.exit_code == 2
    listed = runner.invoke(cli, ["dlq", "list", "--redis-url", redis_url])
    assert listed.exit_code == 0
    assert "reason: not valid JSON" in listed.stdout
    assert "data:   {two" in listed.stdout


# --- transient failures burn no deliveries; backoffs wake on SIGTERM ----------------------------


def _retried(worker):
    """Bulk items the worker's Elasticsearch answered with a retryable status, so far (0
    while its ops port is not listening yet)."""
    assert worker.proc.poll() is None, worker.output()
    try:
        status, text = _get(worker.ops_port, "/metrics")
    except urllib.error.URLError:
        return 0
    if status != 200:
        return 0
    for line in text.splitlines():
        if line.startswith('killkrill_log_worker_bulk_items_total{outcome="retry"}'):
            return float(line.split()[-1])
    return 0


@pytest.mark.slow
def test_a_write_block_longer_than_max_deliveries_dead_letters_nothing(
    redis_client, elasticsearch_client, start_worker
):
    """Elasticsearch refuses writes (index.blocks.write: 403 per item) while every log is
    reclaimed and refused more than max_deliveries times: each delivery that ended in Retry
    is handed back, so once the block is lifted every log is indexed exactly once and
    nothing is dead-lettered."""
    index = _index_ready(elasticsearch_client)
    elasticsearch_client.indices.put_settings(index=index, settings={"index.blocks.write": True})
    _fill(redis_client, 50)
    fast = {
        "KILLKRILL_ELASTICSEARCH__REQUEST_TIMEOUT": "0.5",
        "KILLKRILL_REDIS__SOCKET_TIMEOUT": "1",
        "KILLKRILL_RETRY__MAX_RETRIES": "0",
        "KILLKRILL_CONSUMER__BLOCK_MS": "200",
    }
    worker = start_worker(
        "patient", "--batch-size", "50", "--max-deliveries", "2", "--claim-idle-ms", "4100",
        env=fast,
    )  # fmt: skip
    try:
        wait_for(lambda: _retried(worker) >= 50 * 4, 90, "each log refused 4 times (> 2 + 1)")
        assert redis_client.xlen(DEAD_LETTER) == 0
        assert redis_client.xlen(STREAM) == 50
    finally:
        elasticsearch_client.indices.put_settings(
            index=index, settings={"index.blocks.write": None}
        )
    _drain_then_stop(redis_client, worker, 60, "the logs to be indexed once the block is lifted")
    hits, seqs = _all_seqs(elasticsearch_client)
    assert (hits, sorted(seqs)) == (50, list(range(50)))
    assert redis_client.xlen(DEAD_LETTER) == 0


@pytest.mark.slow
def test_sigterm_wakes_a_worker_in_a_long_retry_backoff(
    redis_client, elasticsearch_client, start_worker
):
    """A batch refused with a retryable status waits an hour before its retry: SIGTERM ends
    the wait at once, the worker exits 0, the logs stay pending (none dead-lettered)."""
    index = _index_ready(elasticsearch_client)
    elasticsearch_client.indices.put_settings(index=index, settings={"index.blocks.write": True})
    _fill(redis_client, 5)
    hour = {"KILLKRILL_RETRY__INITIAL_BACKOFF": "3600", "KILLKRILL_RETRY__MAX_BACKOFF": "3600"}
    worker = start_worker("sleepy", env=hour)
    try:
        wait_for(lambda: _retried(worker) >= 5, 60, "the first attempt to be refused")
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=15) == 0
    finally:
        elasticsearch_client.indices.put_settings(
            index=index, settings={"index.blocks.write": None}
        )
    assert pending_count(redis_client) == 5
    assert redis_client.xlen(DEAD_LETTER) == 0
    assert "log worker stopped" in [line.get("msg") for line in worker.log_lines()]


@pytest.mark.slow
def test_elasticsearch_unreachable_at_start_is_waited_out_not_a_crash(redis_client, start_worker):
    """Started while Elasticsearch is not there (a closed port): the worker stays up, alive
    but not ready, instead of exiting (which would stop `killkrill up`); SIGTERM: exit 0."""
    closed = f"http://127.0.0.1:{free_port()}"
    worker = start_worker("early", "--elasticsearch-url", closed)

    def answers():
        """``/readyz`` once it is past "starting" (the durability check of Redis)."""
        assert worker.proc.poll() is None, worker.output()
        try:
            status, body = _get(worker.ops_port, "/readyz")
        except urllib.error.URLError:
            return None
        return None if body.startswith("starting") else (status, body)

    status, body = wait_for(answers, 30, "/readyz past start-up")
    assert status == 503
    assert "elasticsearch" in body
    wait_for(lambda: "cannot start yet, waiting" in worker.output(), 30, "the start to be retried")
    assert _get(worker.ops_port, "/healthz")[0] == 200
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
