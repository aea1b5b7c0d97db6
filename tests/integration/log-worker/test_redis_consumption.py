"""The log worker reads ``logs-stream`` through a consumer group (real Redis + Elasticsearch)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from log_worker_helpers import DEAD_LETTER, GROUP, STREAM, es_count, make_log, pending_count
from pending import age_pending
from run_names import ES_INDEX_PREFIX

from log_worker.worker import LogParseError, LogWorker

# --- the seed guide's tests --------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.requires_db
def test_log_worker_consumes_from_redis_stream(redis_client, log_worker):
    """Worker should consume logs from Redis Stream"""
    # Setup: Add test log to stream
    test_log = {
        "timestamp": "2024-01-06T12:00:00Z",
        "service": "api",
        "level": "info",
        "message": "Test log entry",
    }
    redis_client.xadd("logs-stream", {"data": json.dumps(test_log)})

    # Execute: Worker processes stream
    log_worker.process_batch(count=1)

    # Verify: Stream is consumed
    remaining = redis_client.xlen("logs-stream")
    assert remaining == 0


@pytest.mark.integration
def test_worker_handles_malformed_logs(redis_client, log_worker):
    """Worker should handle invalid logs gracefully"""
    # Add invalid log (missing required fields)
    redis_client.xadd("logs-stream", {"data": '{"invalid": "log"}'})

    # Should not crash
    with pytest.raises(LogParseError):
        log_worker.process_batch(count=1)


# --- consumer group behaviour ------------------------------------------------------------------


def test_group_is_created_when_missing_and_entries_acked_and_deleted(
    redis_client, elasticsearch_client, log_worker, add_logs
):
    add_logs(25)
    result = log_worker.process_batch(count=100)
    assert (result["success"], result["failed"], result.read) == (25, 0, 25)
    groups = redis_client.xinfo_groups(STREAM)
    assert [g["name"] for g in groups] == [GROUP.encode()]
    assert redis_client.xlen(STREAM) == 0
    assert pending_count(redis_client) == 0
    assert es_count(elasticsearch_client) == 25


def test_existing_group_is_reused_not_reset(redis_client, log_worker, add_logs):
    add_logs(3)
    redis_client.xgroup_create(STREAM, GROUP, id="$")  # the group starts after those 3
    add_logs(2, start=3)
    result = log_worker.process_batch(count=10)
    assert result.read == 2
    assert redis_client.xlen(STREAM) == 3  # never delivered to this group: left alone


def test_malformed_entry_dead_lettered_after_the_rest_is_indexed(
    redis_client, elasticsearch_client, log_worker, add_logs
):
    add_logs(2)
    bad_id = redis_client.xadd(STREAM, {"data": b"{not json"})
    add_logs(2, start=2)
    with pytest.raises(LogParseError, match="not valid JSON"):
        log_worker.process_batch(count=10)
    assert es_count(elasticsearch_client) == 4
    assert redis_client.xlen(STREAM) == 0
    assert pending_count(redis_client) == 0
    [(_, letter)] = redis_client.xrange(DEAD_LETTER)
    assert letter[b"data"] == b"{not json"  # byte for byte
    assert letter[b"source_id"] == bad_id
    assert letter[b"source_stream"] == STREAM.encode()
    assert b"not valid JSON" in letter[b"reason"]
    assert letter[b"worker"].startswith(b"log-worker/")
    assert int(letter[b"attempts"]) >= 1
    assert float(letter[b"failed_at"]) > 0


def test_entry_without_data_field_is_dead_lettered(redis_client, log_worker):
    redis_client.xadd(STREAM, {"payload": "x"})
    result = log_worker.process_batch(count=1, stop_on_error=False)
    assert result["failed"] == 1
    [(_, letter)] = redis_client.xrange(DEAD_LETTER)
    assert b"no `data` field" in letter[b"reason"]


def test_pending_entries_of_a_dead_consumer_are_reclaimed(
    redis_client, elasticsearch_client, log_worker_config, add_logs
):
    """Entries read by a consumer that died are taken over after ``claim_idle_ms``."""
    add_logs(5)
    redis_client.xgroup_create(STREAM, GROUP, id="0")
    redis_client.xreadgroup(GROUP, "dead-consumer", {STREAM: ">"}, count=5)
    assert pending_count(redis_client) == 5
    age_pending(redis_client, STREAM, GROUP)  # the consumer died an hour ago

    with LogWorker({**log_worker_config, "consumer_name": "heir"}) as w:
        result = w.process_batch(count=10)

    assert result["success"] == 5
    assert pending_count(redis_client) == 0
    assert redis_client.xlen(STREAM) == 0
    assert es_count(elasticsearch_client) == 5


def test_live_consumers_pending_entries_are_not_stolen(redis_client, log_worker_config, add_logs):
    add_logs(3)
    redis_client.xgroup_create(STREAM, GROUP, id="0")
    redis_client.xreadgroup(GROUP, "busy-consumer", {STREAM: ">"}, count=3)
    with LogWorker(log_worker_config) as w:  # claim_idle_ms: the default, minutes
        result = w.process_batch(count=10)
    assert result.read == 0
    assert pending_count(redis_client) == 3


def test_entry_delivered_too_often_goes_to_dead_letter(redis_client, log_worker_config, add_logs):
    add_logs(1)
    redis_client.xgroup_create(STREAM, GROUP, id="0")
    redis_client.xreadgroup(GROUP, "c1", {STREAM: ">"}, count=1)
    (entry_id,) = [
        r["message_id"] for r in redis_client.xpending_range(STREAM, GROUP, "-", "+", 10)
    ]
    for name in ("c2", "c3"):  # two more deliveries through XCLAIM (c1, c2 crashed)
        redis_client.xclaim(STREAM, GROUP, name, 0, [entry_id])
    age_pending(redis_client, STREAM, GROUP)  # and c3 too, an hour ago
    config = {**log_worker_config, "max_deliveries": 3}
    with LogWorker(config) as w:
        result = w.process_batch(count=1, stop_on_error=False)
    assert result["dead_lettered"] == 1
    [(_, letter)] = redis_client.xrange(DEAD_LETTER)
    assert b"max_deliveries=3" in letter[b"reason"]
    assert pending_count(redis_client) == 0


def test_two_workers_share_the_stream_without_duplicates(
    redis_client, elasticsearch_client, log_worker_config, add_logs
):
    add_logs(200)
    with (
        LogWorker({**log_worker_config, "consumer_name": "a"}) as a,
        LogWorker({**log_worker_config, "consumer_name": "b"}) as b,
    ):
        total = 0
        while redis_client.xlen(STREAM):
            total += a.process_batch(count=30)["success"]
            total += b.process_batch(count=30)["success"]
    assert total == 200
    assert es_count(elasticsearch_client) == 200
    consumers = {c["name"] for c in redis_client.xinfo_consumers(STREAM, GROUP)}
    assert consumers == {b"a", b"b"}


def test_redis_url_may_be_a_full_url(redis_url, redis_client, elasticsearch_url, add_logs):
    add_logs(1)
    config = {"redis_url": redis_url, "elasticsearch_url": elasticsearch_url,
              "elasticsearch_index": ES_INDEX_PREFIX}  # fmt: skip
    with LogWorker(config) as w:
        assert w.process_batch(count=1)["success"] == 1


def test_custom_stream_group_and_dead_letter_names(redis_client, log_worker_config):
    config = {**log_worker_config, "stream": "app-logs", "consumer_group": "indexers",
              "dead_letter_stream": "app-logs:poison"}  # fmt: skip
    redis_client.xadd("app-logs", {"data": json.dumps(make_log(1))})
    redis_client.xadd("app-logs", {"data": "[]"})
    with LogWorker(config) as w:
        result = w.process_batch(count=5, stop_on_error=False)
    assert (result["success"], result["failed"]) == (1, 1)
    assert redis_client.xinfo_groups("app-logs")[0]["name"] == b"indexers"
    assert redis_client.xlen("app-logs:poison") == 1
    assert redis_client.xlen("app-logs") == 0


async def test_async_variant_and_sync_api_inside_a_running_loop(redis_client, log_worker, add_logs):
    """``aprocess_batch`` runs on the caller's loop; the sync API still works from inside
    a running loop (on the worker's own loop, in a helper thread)."""
    add_logs(4)
    result = await log_worker.aprocess_batch(count=2)
    assert result["success"] == 2
    result = log_worker.process_batch(count=2)
    assert result["success"] == 2
    assert redis_client.xlen(STREAM) == 0
    await log_worker.aclose()


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_long_running_mode_reads_ahead_and_stop_leaves_nothing_pending(
    redis_client, elasticsearch_client, log_worker_config, add_logs, in_flight
):
    """While a batch is written the lane reads its next one; on stop, that batch read ahead
    is written and acked too: nothing is left pending, nothing is indexed twice."""
    add_logs(200)
    worker = LogWorker({**log_worker_config, "block_ms": 50})
    worker.settings.consumer.in_flight = in_flight
    batches = []

    async def on_batch(result):
        batches.append(result)
        if len(batches) == 1:
            worker.request_stop()

    await worker.run(on_batch=on_batch)
    await worker.aclose()
    indexed = sum(b.success for b in batches)
    assert all(b.failed == 0 for b in batches)
    assert len(batches) > 1  # the batch read ahead was delivered after the stop request
    assert pending_count(redis_client) == 0
    assert redis_client.xlen(STREAM) == 200 - indexed
    elasticsearch_client.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")
    assert es_count(elasticsearch_client, f"{ES_INDEX_PREFIX}-*") == indexed


def test_the_sync_api_is_safe_from_several_threads_at_once(
    redis_client, elasticsearch_client, log_worker, add_logs
):
    """Four threads calling ``process_batch`` on one worker at once: the calls share its
    private loop, each entry is read by one of them, every log indexed exactly once."""
    add_logs(60)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: log_worker.process_batch(count=15), range(4)))
    assert sum(r["success"] for r in results) == 60
    assert sum(r["read"] for r in results) == 60
    assert es_count(elasticsearch_client) == 60
    assert redis_client.xlen(STREAM) == 0
