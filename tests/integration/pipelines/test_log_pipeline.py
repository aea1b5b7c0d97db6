"""Logs end to end: HTTP and syslog -> receivers -> Redis Streams -> log worker -> ES."""

from __future__ import annotations

import json
import socket
import uuid

import httpx
import pytest
import redis
from elasticsearch import Elasticsearch
from polling import wait_for
from run_names import ES_INDEX_PREFIX

from killkrill.dev.pipeline import LocalPipeline

from .conftest import es_count

pytestmark = [pytest.mark.requires_db, pytest.mark.slow]


def test_http_batches_and_ndjson_are_indexed_once_and_enriched(
    pipeline: LocalPipeline, elasticsearch_client: Elasticsearch, redis_client: redis.Redis
) -> None:
    run = uuid.uuid4().hex
    batch = [
        {
            "timestamp": f"2024-01-06T12:{i // 60:02d}:{i % 60:02d}Z",
            "service": "checkout",
            "level": ["INFO", "warning", "ERR"][i % 3],
            "message": f"order {i} placed",
            "run": run,
            "order_id": i,
        }
        for i in range(200)
    ]
    ndjson = "\n".join(
        json.dumps(
            {
                "timestamp": 1704542400 + i,
                "service": "checkout",
                "level": "debug",
                "message": f"ndjson {i}",
                "run": run,
            }
        )
        for i in range(50)
    )
    base = f"http://127.0.0.1:{pipeline.ports.http}"  # type: ignore[attr-defined]
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.post("/api/v1/logs", json=batch).json() == {"accepted": 200, "rejected": 0}
        answer = http.post(
            "/api/v1/logs", content=ndjson, headers={"content-type": "application/x-ndjson"}
        )
        assert answer.status_code == 200, answer.text

    query = {"term": {"run": run}}
    wait_for(lambda: es_count(elasticsearch_client, query) == 250, what="250 documents")
    wait_for(lambda: redis_client.xlen("logs-stream") == 0, what="the logs stream to drain")
    hits = elasticsearch_client.search(
        index=f"{ES_INDEX_PREFIX}-*", query={"term": {"order_id": 7}}, size=10
    )["hits"]["hits"]
    assert len(hits) == 1
    doc = hits[0]["_source"]
    assert (doc["level"], doc["message"], doc["@timestamp"][:19]) == (
        "warn",  # order 7: "warning" (7 % 3 == 1), normalised
        "order 7 placed",
        "2024-01-06T12:00:07",
    )
    assert hits[0]["_index"] == f"{ES_INDEX_PREFIX}-2024.01.06"
    assert {"processed_at", "environment", "version"} <= set(doc)


def test_syslog_over_udp_and_tcp_is_indexed_with_its_fields(
    pipeline: LocalPipeline, elasticsearch_client: Elasticsearch
) -> None:
    run = uuid.uuid4().hex
    port = pipeline.ports.syslog  # type: ignore[attr-defined]
    rfc5424 = (
        f'<11>1 2024-01-06T12:00:00.000Z web-1 nginx 4242 ID47 [req@1 run="{run}"] upstream timed out'
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(rfc5424, ("127.0.0.1", port))
    rfc3164 = f"<30>Jan  6 12:00:01 db-1 postgres[77]: checkpoint complete {run}\n".encode()
    with socket.create_connection(("127.0.0.1", port)) as tcp:
        tcp.sendall(rfc3164)

    wait_for(
        lambda: (
            (es_count(elasticsearch_client, {"match": {"message": run}}) or 0) >= 1
            and es_count(elasticsearch_client, {"term": {"service": "nginx"}}) == 1
        ),
        what="both syslog messages",
    )
    [nginx] = elasticsearch_client.search(
        index=f"{ES_INDEX_PREFIX}-*", query={"term": {"service": "nginx"}}
    )["hits"]["hits"]
    doc = nginx["_source"]
    assert (doc["level"], doc["hostname"], doc["message"]) == (
        "error",
        "web-1",
        "upstream timed out",
    )
    [pg] = elasticsearch_client.search(
        index=f"{ES_INDEX_PREFIX}-*", query={"term": {"service": "postgres"}}
    )["hits"]["hits"]
    assert pg["_source"]["level"] == "info"
    assert pg["_source"]["message"] == f"checkpoint complete {run}"
