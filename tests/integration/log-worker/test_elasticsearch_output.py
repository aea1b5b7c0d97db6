"""The log worker writes to real Elasticsearch: daily indices, template, idempotent ``_id``."""

from __future__ import annotations

import json

import pytest
from log_worker_helpers import DEAD_LETTER, GROUP, STREAM, es_count, make_log, pending_count
from pending import age_pending
from run_names import ES_INDEX_PREFIX

from log_worker.worker import LogWorker

# --- the seed guide's tests --------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.requires_db
def test_logs_persisted_to_elasticsearch(redis_client, elasticsearch_client, log_worker):
    """Logs should be indexed in Elasticsearch after processing"""
    # Setup: Add log to Redis stream
    test_log = {
        "timestamp": "2024-01-06T12:00:00Z",
        "service": "auth-service",
        "level": "error",
        "message": "Authentication failed",
    }
    redis_client.xadd("logs-stream", {"data": json.dumps(test_log)})

    # Execute: Process logs
    log_worker.process_batch(count=1)

    # Verify: Log indexed in Elasticsearch
    elasticsearch_client.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")  # Allow indexing
    search_result = elasticsearch_client.search(
        index=f"{ES_INDEX_PREFIX}-*", query={"match": {"service": "auth-service"}}
    )

    assert search_result["hits"]["total"]["value"] > 0
    log_doc = search_result["hits"]["hits"][0]["_source"]
    assert log_doc["message"] == "Authentication failed"


@pytest.mark.integration
@pytest.mark.slow
def test_worker_processes_large_batch(redis_client, elasticsearch_client, log_worker):
    """Worker should handle large batches without data loss"""
    # Setup: Add 1000 logs to stream
    num_logs = 1000
    for i in range(num_logs):
        log = {
            "timestamp": f"2024-01-06T12:00:{i % 60:02d}Z",
            "service": f"service-{i % 10}",
            "level": ["info", "warn", "error"][i % 3],
            "message": f"Log message {i}",
        }
        redis_client.xadd("logs-stream", {"data": json.dumps(log)})

    # Execute: Process all logs
    log_worker.process_batch(count=num_logs)

    # Verify: All logs indexed
    elasticsearch_client.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")
    search_result = elasticsearch_client.search(
        index=f"{ES_INDEX_PREFIX}-*", query={"match_all": {}}, size=0
    )

    assert search_result["hits"]["total"]["value"] == num_logs


# --- indices, template, idempotency ------------------------------------------------------------


def test_daily_index_by_the_records_own_utc_date(redis_client, elasticsearch_client, log_worker):
    for ts in ("2024-01-06T23:30:00-02:00", "2024-01-06T00:10:00+01:00", "2023-12-31T23:59:59Z"):
        redis_client.xadd(STREAM, {"data": json.dumps(make_log(0, timestamp=ts))})
    assert log_worker.process_batch(count=10)["success"] == 3
    elasticsearch_client.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")
    counts = {
        row["index"]: int(row["docs.count"])
        for row in elasticsearch_client.cat.indices(index=f"{ES_INDEX_PREFIX}-*", format="json")
    }
    assert counts == {
        f"{ES_INDEX_PREFIX}-2024.01.07": 1,  # 23:30 at -02:00 is 01:30 UTC the next day
        f"{ES_INDEX_PREFIX}-2024.01.05": 1,  # 00:10 at +01:00 is 23:10 UTC the day before
        f"{ES_INDEX_PREFIX}-2023.12.31": 1,
    }


def test_index_template_installed_with_the_mappings(elasticsearch_client, log_worker):
    log_worker.process_batch(count=1)  # installs the template, even with nothing to read
    tpl = elasticsearch_client.indices.get_index_template(name=f"killkrill-{ES_INDEX_PREFIX}")
    body = tpl["index_templates"][0]["index_template"]
    assert body["index_patterns"] == [f"{ES_INDEX_PREFIX}-*"]
    assert "data_stream" not in body
    props = body["template"]["mappings"]["properties"]
    assert props["@timestamp"]["type"] == "date"
    assert props["service"]["type"] == "keyword"
    assert props["level"]["type"] == "keyword"
    assert props["message"]["type"] == "text"
    assert props["processed_at"]["type"] == "date"


def test_index_gets_the_template_mapping(redis_client, elasticsearch_client, log_worker):
    redis_client.xadd(STREAM, {"data": json.dumps(make_log(1, service="auth-service"))})
    log_worker.process_batch(count=1)
    mapping = elasticsearch_client.indices.get_mapping(index=f"{ES_INDEX_PREFIX}-2024.01.06")
    props = mapping[f"{ES_INDEX_PREFIX}-2024.01.06"]["mappings"]["properties"]
    assert props["service"]["type"] == "keyword"
    assert props["@timestamp"]["type"] == "date"
    # keyword: exact term queries and aggregations work on service and level
    elasticsearch_client.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")
    resp = elasticsearch_client.search(
        index=f"{ES_INDEX_PREFIX}-*",
        size=0,
        aggs={"services": {"terms": {"field": "service"}}},
        query={"term": {"level": "warn"}},
    )
    assert resp["aggregations"]["services"]["buckets"][0]["key"] == "auth-service"


def test_document_id_comes_from_pipeline_stream_and_entry_id(
    redis_client, elasticsearch_client, log_worker
):
    entry_id = redis_client.xadd(STREAM, {"data": json.dumps(make_log(1))}).decode()
    log_worker.process_batch(count=1)
    doc = elasticsearch_client.get(
        index=f"{ES_INDEX_PREFIX}-2024.01.06", id=f"default:{STREAM}:{entry_id}"
    )
    assert doc["_source"]["seq"] == 1


def test_same_entry_indexed_twice_is_one_document(
    redis_client, elasticsearch_client, log_worker_config
):
    """A consumer crashed between _bulk and XACK; the entry is reclaimed and written again
    by another consumer: still one document, the crashed write overwritten."""
    redis_client.xadd(STREAM, {"data": json.dumps(make_log(3))})
    redis_client.xgroup_create(STREAM, GROUP, id="0")
    [(_, [(entry_id, _fields)])] = redis_client.xreadgroup(GROUP, "crashed", {STREAM: ">"})
    # The crashed consumer had already written its document:
    elasticsearch_client.index(
        index=f"{ES_INDEX_PREFIX}-2024.01.06",
        id=f"default:{STREAM}:{entry_id.decode()}",
        document={"seq": 3, "message": "partial write by the crashed consumer"},
        refresh=True,
    )
    age_pending(redis_client, STREAM, GROUP)  # it crashed an hour ago
    with LogWorker(log_worker_config) as w:
        assert w.process_batch(count=1)["success"] == 1
    assert es_count(elasticsearch_client) == 1
    doc = elasticsearch_client.get(
        index=f"{ES_INDEX_PREFIX}-2024.01.06", id=f"default:{STREAM}:{entry_id.decode()}"
    )
    assert doc["_source"]["message"] == "Log message 3"  # overwritten by the full document
    assert pending_count(redis_client) == 0


def test_mapping_conflict_is_dead_lettered_with_the_es_reason(
    redis_client, elasticsearch_client, log_worker
):
    redis_client.xadd(STREAM, {"data": json.dumps(make_log(1, user="bob"))})
    bad = json.dumps(make_log(2, user={"name": "bob"}))
    bad_id = redis_client.xadd(STREAM, {"data": bad})
    redis_client.xadd(STREAM, {"data": json.dumps(make_log(3, user="eve"))})
    result = log_worker.process_batch(count=10)
    assert (result["success"], result["failed"], result.dead_lettered) == (2, 1, 1)
    assert es_count(elasticsearch_client) == 2
    assert redis_client.xlen(STREAM) == 0
    [(_, letter)] = redis_client.xrange(DEAD_LETTER)
    assert letter[b"source_id"] == bad_id
    assert letter[b"data"] == bad.encode()
    assert b"elasticsearch 400" in letter[b"reason"]
    assert b"user" in letter[b"reason"]


def test_a_record_repeating_a_key_is_dead_lettered_with_the_es_reason(
    redis_client, elasticsearch_client, log_worker
):
    """A canonical record is indexed as its own bytes: a repeated key (ambiguous JSON, which
    no receiver writes) reaches Elasticsearch as sent, which refuses it; it is dead-lettered
    byte for byte with the reason, and the rest of the batch is indexed."""
    head = '{"timestamp":"2024-01-06T12:00:00.000000Z","service":"api","level":"info"'
    redis_client.xadd(STREAM, {"data": head + ',"message":"ok"}'})
    bad = head + ',"message":"a","user":"bob","user":"eve"}'
    bad_id = redis_client.xadd(STREAM, {"data": bad})
    result = log_worker.process_batch(count=10)
    assert (result["success"], result["failed"], result.dead_lettered) == (1, 1, 1)
    assert es_count(elasticsearch_client) == 1
    assert redis_client.xlen(STREAM) == 0
    [(_, letter)] = redis_client.xrange(DEAD_LETTER)
    assert letter[b"source_id"] == bad_id
    assert letter[b"data"] == bad.encode()
    assert b"elasticsearch 400" in letter[b"reason"]
    assert b"Duplicate field 'user'" in letter[b"reason"]


def test_syslog_fields_are_exact_values_and_raw_is_kept_not_indexed(
    redis_client, elasticsearch_client, log_worker
):
    """The syslog receiver's fields are keywords (exact values; ``<name>.keyword`` still
    answers), structured-data values too; ``raw`` is in ``_source`` but not indexed, so a
    line of any length is taken."""
    long_line = "<14>1 2024-01-06T12:00:00Z web-01 app - - - " + "x" * 100_000
    records = [
        make_log(1, hostname="web-01.example.com", msgid="ID47", facility="local4",
                 severity="notice", procid="42", syslog_format="rfc5424",
                 structured_data={"origin@1": {"ip": "10.0.0.1", "software": "Foo Bar"}},
                 raw="<165>1 2024-01-06T12:00:01Z web-01.example.com app 42 ID47 unique-raw"),
        make_log(2, hostname="web-02.example.com", raw=long_line),
    ]  # fmt: skip
    for record in records:
        redis_client.xadd(STREAM, {"data": json.dumps(record)})
    assert log_worker.process_batch(count=2)["success"] == 2
    elasticsearch_client.indices.refresh(index=f"{ES_INDEX_PREFIX}-*")

    index = f"{ES_INDEX_PREFIX}-2024.01.06"
    props = elasticsearch_client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    for name in ("hostname", "procid", "msgid", "facility", "severity", "syslog_format"):
        assert props[name]["type"] == "keyword", name
    assert (
        props["structured_data"]["properties"]["origin@1"]["properties"]["software"]["type"]
        == "keyword"
    )
    assert props["raw"] == {"type": "text", "index": False}

    def hits(query: dict[str, object]) -> list[int]:
        found = elasticsearch_client.search(index=f"{ES_INDEX_PREFIX}-*", query=query)
        return sorted(h["_source"]["seq"] for h in found["hits"]["hits"])

    assert hits({"term": {"hostname": "web-01.example.com"}}) == [1]
    assert hits({"term": {"hostname.keyword": "web-02.example.com"}}) == [2]
    assert hits({"match": {"hostname": "web"}}) == []  # exact values, not words
    assert hits({"term": {"msgid": "ID47"}}) == hits({"term": {"msgid.keyword": "ID47"}}) == [1]
    assert hits({"term": {"structured_data.origin@1.software": "Foo Bar"}}) == [1]
    assert hits({"term": {"structured_data.origin@1.ip.keyword": "10.0.0.1"}}) == [1]
    assert hits({"match": {"message": "message"}}) == [1, 2]
    doc = elasticsearch_client.search(index=f"{ES_INDEX_PREFIX}-*", query={"term": {"seq": 2}})[
        "hits"
    ]["hits"][0]["_source"]
    assert doc["raw"] == long_line
