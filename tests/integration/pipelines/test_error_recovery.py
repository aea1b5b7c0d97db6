"""Recovery end to end: a worker killed with SIGKILL mid-stream, and a poison record."""

from __future__ import annotations

import json
import subprocess
import sys
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


def _logs(run: str, start: int, n: int) -> list[dict[str, object]]:
    return [
        {
            "timestamp": "2024-01-06T12:00:00Z",
            "service": "billing",
            "level": "info",
            "message": f"invoice {i}",
            "run": run,
            "seq": i,
        }
        for i in range(start, start + n)
    ]


def test_log_worker_killed_mid_stream_loses_and_doubles_nothing(
    pipeline: LocalPipeline, elasticsearch_client: Elasticsearch, redis_client: redis.Redis
) -> None:
    run = uuid.uuid4().hex
    base = f"http://127.0.0.1:{pipeline.ports.http}"  # type: ignore[attr-defined]
    with httpx.Client(base_url=base, timeout=60) as http:
        for start in range(0, 5000, 1000):
            assert http.post("/api/v1/logs", json=_logs(run, start, 1000)).status_code == 200
        query = {"term": {"run": run}}
        wait_for(lambda: (es_count(elasticsearch_client, query) or 0) > 0, what="indexing to start")
        assert pipeline.kill("log-worker") == -9
        # More traffic while no worker runs: the receivers keep accepting.
        assert http.post("/api/v1/logs", json=_logs(run, 5000, 1000)).status_code == 200

    pipeline.restart("log-worker")  # a new process: a new consumer name
    wait_for(lambda: es_count(elasticsearch_client, query) == 6000, what="all 6,000 documents")
    wait_for(lambda: redis_client.xlen("logs-stream") == 0, what="the stream to drain")
    wait_for(
        lambda: redis_client.xpending("logs-stream", "log-worker")["pending"] == 0,
        what="no pending entries",
    )
    distinct = elasticsearch_client.search(
        index=f"{ES_INDEX_PREFIX}-*",
        query=query,
        size=0,
        aggs={"seqs": {"cardinality": {"field": "seq", "precision_threshold": 10000}}},
    )
    assert distinct["hits"]["total"]["value"] == 6000
    assert distinct["aggregations"]["seqs"]["value"] == 6000


def test_poison_record_is_dead_lettered_and_the_rest_indexed(
    pipeline: LocalPipeline, elasticsearch_client: Elasticsearch, redis_url: str
) -> None:
    run = uuid.uuid4().hex
    good = _logs(run, 0, 99)
    # `seq` is mapped as a number by the first documents; a string there is a mapping error.
    poison = {**_logs(run, 99, 1)[0], "seq": "not-a-number"}
    base = f"http://127.0.0.1:{pipeline.ports.http}"  # type: ignore[attr-defined]
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.post("/api/v1/logs", json=good[:50]).status_code == 200
        wait_for(
            lambda: es_count(elasticsearch_client, {"term": {"run": run}}) == 50,
            what="the first 50 documents (mapping seq as a number)",
        )
        assert http.post("/api/v1/logs", json=[*good[50:], poison]).status_code == 200

    wait_for(
        lambda: es_count(elasticsearch_client, {"term": {"run": run}}) == 99,
        what="all 99 good documents",
    )
    listed = wait_for(
        lambda: subprocess.run(
            [sys.executable, "-m", "killkrill", "dlq", "list", "--json", "--redis-url", redis_url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip(),
        what="the poison record in the dead-letter stream",
    )
    [letter] = [json.loads(line) for line in listed.splitlines()]
    assert "not-a-number" in json.dumps(letter)
    assert "seq" in letter["reason"] or "mapper_parsing" in letter["reason"], letter
