"""Failures on the way to Elasticsearch, against the real services: nothing lost, nothing doubled.

Faults are injected for real: a one-shot failing hook on the worker's transport (the
request never reaches Elasticsearch), index write blocks (Elasticsearch answers per item
with 429/403), ``SIGSTOP`` of the Elasticsearch process (the client times out), stopping and
starting Elasticsearch, and ``SIGKILL`` of a worker process.
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
from elastic_transport import ConnectionTimeout
from log_worker_helpers import (
    DEAD_LETTER,
    GROUP,
    STREAM,
    es_count,
    make_log,
    pending_count,
)
from polling import wait_for
from run_names import ES_INDEX_PREFIX

from killkrill.cli.main import cli
from log_worker.worker import LogWorker

# --- the seed guide's tests --------------------------------------------------------------------


@pytest.mark.integration
def test_worker_retries_on_elasticsearch_timeout(
    redis_client, elasticsearch_client, log_worker, mocker
):
    """Worker should retry on temporary service failures"""
    # Setup: make the worker's own Elasticsearch transport fail once (the guide patched the
    # test's client, which the worker does not use); the retry reaches the real server.
    call_count = {"count": 0}

    transport = log_worker.sink.client.transport
    original_perform = transport.perform_request

    async def flaky_perform(method, target, *args, **kwargs):
        if "_bulk" in target:
            call_count["count"] += 1
            if call_count["count"] == 1:
                raise ConnectionTimeout("Connection timeout")
        return await original_perform(method, target, *args, **kwargs)

    mocker.patch.object(transport, "perform_request", side_effect=flaky_perform)

    # Add test log
    test_log = {
        "timestamp": "2024-01-06T12:00:00Z",
        "service": "api",
        "level": "info",
        "message": "retried once",
    }
    redis_client.xadd("logs-stream", {"data": json.dumps(test_log)})

    # Execute: Should retry and succeed
    result = log_worker.process_batch(count=1, max_retries=2)

    # Verify: Called at least twice (initial + retry)
    assert call_count["count"] >= 2
    assert result.attempts >= 2
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


def _fail_bulk(worker, times):
    """Make the worker's next ``times`` _bulk requests time out before reaching the server."""
    transport = worker.sink.client.transport
    original = transport.perform_request
    calls = {"bulk": 0}

    async def perform(method, target, *args, **kwargs):
        if "_bulk" in target:
            calls["bulk"] += 1
            if calls["bulk"] <= times:
                raise ConnectionTimeout("injected timeout")
        return await original(method, target, *args, **kwargs)

    transport.perform_request = perform
    return calls


def test_exhausted_retries_leave_entries_pending_then_they_come_back(
    redis_client, elasticsearch_client, log_worker_config, add_logs
):
    add_logs(5)
    config = {**log_worker_config, "claim_idle_ms": 1, "initial_backoff": 0.01}
    with LogWorker(config) as worker:
        calls = _fail_bulk(worker, times=3)
        result = worker.process_batch(count=5, max_retries=2)
        assert (result["success"], result["failed"], result.pending) == (0, 5, 5)
        assert calls["bulk"] == 3  # first try + 2 retries
        assert result.retries == 2
        assert redis_client.xlen(STREAM) == 5  # nothing acked
        assert pending_count(redis_client) == 5
        assert redis_client.xlen(DEAD_LETTER) == 0
        # Elasticsearch works again: the pending entries are reclaimed and indexed.
        result = worker.process_batch(count=5)
    assert result["success"] == 5
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
    index = f"{ES_INDEX_PREFIX}-2024.01.06"
    elasticsearch_client.indices.create(index=index)
    elasticsearch_client.indices.put_settings(index=index, settings={block: True})
    add_logs(3)
    add_logs(1, start=3, timestamp="2024-01-07T00:00:00Z")  # another day: not blocked
    config = {**log_worker_config, "claim_idle_ms": 1, "initial_backoff": 0.01}
    try:
        with LogWorker(config) as worker:
            result = worker.process_batch(count=4, max_retries=1)
            assert (result["success"], result.pending) == (1, 3)
            assert f"elasticsearch {status}" in result.errors[-1]
            assert pending_count(redis_client) == 3
            elasticsearch_client.indices.put_settings(index=index, settings={block: None})
            result = worker.process_batch(count=10)
            assert result["success"] == 3
    finally:
        elasticsearch_client.indices.put_settings(index=index, settings={block: None})
    assert es_count(elasticsearch_client) == 4
    assert redis_client.xlen(STREAM) == 0


@pytest.mark.slow
def test_retry_after_a_real_client_timeout_sigstop(
    redis_client, elasticsearch_client, log_worker_config, managed_elasticsearch
):
    """Elasticsearch frozen with SIGSTOP: the first _bulk times out, a retry succeeds after
    SIGCONT; at least two attempts and exactly one document."""
    config = {**log_worker_config, "timeout": 1, "initial_backoff": 0.5, "max_backoff": 1}
    with LogWorker(config) as worker:
        worker.process_batch(count=1)  # template installed, connections open
        redis_client.xadd(STREAM, {"data": json.dumps(make_log(1))})
        pid = managed_elasticsearch.pid()
        os.kill(pid, signal.SIGSTOP)
        resume = threading.Timer(1.5, os.kill, (pid, signal.SIGCONT))
        resume.start()
        try:
            result = worker.process_batch(count=1, max_retries=5)
        finally:
            resume.cancel()
            os.kill(pid, signal.SIGCONT)
    assert result.attempts >= 2
    assert result["success"] == 1
    assert es_count(elasticsearch_client) == 1
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

    second = start_worker("heir", "--batch-size", "250", "--claim-idle-ms", "1000")
    wait_for(
        lambda: redis_client.xlen(STREAM) == 0 and pending_count(redis_client) == 0,
        90,
        "the second worker to drain the stream and the first one's pending entries",
    )
    second.signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0

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
        "--claim-idle-ms", "500",
        env={"KILLKRILL_RETRY__MAX_BACKOFF": "1", "KILLKRILL_ELASTICSEARCH__REQUEST_TIMEOUT": "2"},
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
    wait_for(
        lambda: redis_client.xlen(STREAM) == 0 and pending_count(redis_client) == 0,
        60,
        "the backlog to drain after Elasticsearch came back",
    )
    worker.signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
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
