"""End-to-end fixtures: the whole pipeline as real processes (`killkrill.dev.pipeline`)
over the real services, on free loopback ports, stopped (drained, exit 0) after each test."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from elasticsearch import Elasticsearch
from es_queries import count_docs
from run_names import ES_INDEX_PREFIX

from killkrill.dev.pipeline import LocalPipeline, Ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def pipeline(
    redis_url: str,
    redis_client: redis.Redis,
    elasticsearch_url: str,
    elasticsearch_client: Elasticsearch,
    database_schema: str,
    postgres_connection: Any,
) -> Iterator[LocalPipeline]:
    """A running pipeline (receivers, log worker, metrics worker) on clean services."""
    ports = Ports(
        http=free_port(),
        syslog=free_port(),
        syslog_ops=free_port(),
        log_worker_ops=free_port(),
        metrics_worker_ops=free_port(),
    )
    env = {
        "REDIS_URL": redis_url,
        "ELASTICSEARCH_URL": elasticsearch_url,
        "DATABASE_URL": database_schema,
        "KILLKRILL_ELASTICSEARCH__INDEX_PREFIX": ES_INDEX_PREFIX,
        # Reclaim a killed worker's pending entries quickly in the recovery tests: short
        # timeouts and no in-batch retries bound a live batch to 2 x (2 x 1 s + 1 s), which
        # claim_idle_ms must exceed (checked at load).
        "KILLKRILL_CONSUMER__CLAIM_IDLE_MS": "6100",
        "KILLKRILL_CONSUMER__BLOCK_MS": "200",
        "KILLKRILL_RETRY__MAX_RETRIES": "0",
        "KILLKRILL_REDIS__SOCKET_TIMEOUT": "1",
        "KILLKRILL_ELASTICSEARCH__REQUEST_TIMEOUT": "1",
        "KILLKRILL_AGGREGATION__STATEMENT_TIMEOUT": "1",
    }
    running = LocalPipeline(env, ports)
    running.ports = ports  # type: ignore[attr-defined]
    running.start()
    yield running
    codes = running.stop()
    assert all(code == 0 for code in codes.values()), f"unclean exits: {codes}"


def es_count(client: Elasticsearch, query: dict[str, Any]) -> int | None:
    """This run's log documents matching ``query``, after a refresh (no sleeps); ``None``
    while a new daily index is not searchable yet (see ``es_queries``)."""
    return count_docs(client, f"{ES_INDEX_PREFIX}-*", query)
