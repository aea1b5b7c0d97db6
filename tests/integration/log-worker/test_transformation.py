"""What the log worker does to a record on its way to Elasticsearch (real services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from log_worker_helpers import STREAM, make_log
from run_names import ES_INDEX_PREFIX

from log_worker.worker import LogWorker

# --- the seed guide's test ---------------------------------------------------------------------


@pytest.mark.integration
def test_log_enrichment_in_pipeline(redis_client, elasticsearch_client, log_worker):
    """Worker should enrich logs with additional fields"""
    # Setup: Raw log entry
    test_log = {
        "timestamp": "2024-01-06T12:00:00Z",
        "service": "api",
        "level": "info",
        "message": "Request completed",
    }
    redis_client.xadd("logs-stream", {"data": json.dumps(test_log)})

    # Execute: Process log
    log_worker.process_batch(count=1)

    # Verify: Enriched fields in Elasticsearch
    elasticsearch_client.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")
    search_result = elasticsearch_client.search(
        index=f"{ES_INDEX_PREFIX}-*", query={"match": {"message": "Request completed"}}
    )

    doc = search_result["hits"]["hits"][0]["_source"]
    assert "processed_at" in doc  # Added by worker
    assert "environment" in doc  # Added by worker
    assert "version" in doc  # Added by worker


# --- normalisation and enrichment --------------------------------------------------------------


def _index_one(redis_client, elasticsearch_client, worker, record):
    redis_client.xadd(STREAM, {"data": json.dumps(record)})
    assert worker.process_batch(count=1)["success"] == 1
    elasticsearch_client.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")
    [hit] = elasticsearch_client.search(index=f"{ES_INDEX_PREFIX}-*")["hits"]["hits"]
    return hit["_source"]


@pytest.mark.parametrize(
    ("level", "expected"),
    [("INFO", "info"), ("Warning", "warn"), ("CRITICAL", "fatal"), ("err", "error"), (20, "debug")],
)
def test_level_is_normalised(redis_client, elasticsearch_client, log_worker, level, expected):
    doc = _index_one(redis_client, elasticsearch_client, log_worker, make_log(1, level=level))
    assert doc["level"] == expected


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-01-06T14:00:00+02:00", "2024-01-06T12:00:00.000000Z"),
        ("2024-01-06 12:00:00", "2024-01-06T12:00:00.000000Z"),
        (1704542400, "2024-01-06T12:00:00.000000Z"),
        (1704542400123, "2024-01-06T12:00:00.123000Z"),
    ],
)
def test_timestamp_becomes_utc_at_timestamp(
    redis_client, elasticsearch_client, log_worker, timestamp, expected
):
    doc = _index_one(
        redis_client, elasticsearch_client, log_worker, make_log(1, timestamp=timestamp)
    )
    assert doc["@timestamp"] == expected
    assert doc["timestamp"] == expected


def test_processed_at_environment_version_from_config(
    redis_client, elasticsearch_client, log_worker_config
):
    config = {**log_worker_config, "environment": "staging", "version": "2.3.4"}
    before = datetime.now(UTC)
    with LogWorker(config) as worker:
        doc = _index_one(redis_client, elasticsearch_client, worker, make_log(1))
    processed = datetime.fromisoformat(doc["processed_at"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= processed <= datetime.now(UTC)
    assert (doc["environment"], doc["version"]) == ("staging", "2.3.4")


def test_extra_fields_are_kept(redis_client, elasticsearch_client, log_worker):
    record = make_log(
        1, request_id="c0ffee", http={"status": 503, "path": "/api/v1/users"}, tags=["a", "b"]
    )
    doc = _index_one(redis_client, elasticsearch_client, log_worker, record)
    assert doc["request_id"] == "c0ffee"
    assert doc["http"] == {"status": 503, "path": "/api/v1/users"}
    assert doc["tags"] == ["a", "b"]
    assert doc["seq"] == 1


def test_records_own_environment_wins_over_config(redis_client, elasticsearch_client, log_worker):
    doc = _index_one(
        redis_client, elasticsearch_client, log_worker, make_log(1, environment="canary")
    )
    assert doc["environment"] == "canary"


def test_configured_drops_and_renames(redis_client, elasticsearch_client, log_worker_config):
    config = {
        **log_worker_config,
        "drop_fields": ["password", "absent"],
        "rename_fields": {"msg_id": "message_id"},
    }
    with LogWorker(config) as worker:
        doc = _index_one(
            redis_client,
            elasticsearch_client,
            worker,
            make_log(1, password="hunter2", msg_id="m-1"),
        )
    assert "password" not in doc
    assert "msg_id" not in doc
    assert doc["message_id"] == "m-1"


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (make_log(1, level="loud"), "level"),
        (make_log(1, timestamp="yesterday"), "timestamp"),
        (make_log(1, service=""), "service"),
        (make_log(1, message={"nested": True}), "message"),
        (make_log(1, _id="x"), "_id"),
    ],
)
def test_invalid_records_are_dead_lettered_naming_the_field(
    redis_client, log_worker, record, field
):
    redis_client.xadd(STREAM, {"data": json.dumps(record)})
    result = log_worker.process_batch(count=1, stop_on_error=False)
    assert result["failed"] == 1
    [(_, letter)] = redis_client.xrange(f"{STREAM}:dead-letter")
    assert letter[b"reason"].decode().startswith(f"{field}: ")
