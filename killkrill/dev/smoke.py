"""A smoke check that each real service stores and returns data."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping

import psycopg2
from elasticsearch import Elasticsearch

from killkrill.streams import sync_client

__all__ = ["run_smoke"]


def run_smoke(env: Mapping[str, str]) -> Iterator[str]:
    """Round-trip one record through Redis, PostgreSQL and Elasticsearch; yield a line each.

    Every key, table and index it makes is unique to the run and removed afterwards.
    """
    token = uuid.uuid4().hex

    started = time.perf_counter()
    redis = sync_client(env["REDIS_URL"])
    stream = f"smoke-{token}"
    try:
        entry_id = redis.xadd(stream, {"data": token})
        rows = redis.xrange(stream)
        assert rows == [(entry_id, {b"data": token.encode()})], rows
    finally:
        redis.delete(stream)
        redis.close()
    yield f"redis: XADD/XRANGE ok ({(time.perf_counter() - started) * 1000:.0f} ms)"

    started = time.perf_counter()
    conn = psycopg2.connect(env["TEST_DATABASE_URL"])
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TEMP TABLE smoke (token text)")
            cur.execute("INSERT INTO smoke VALUES (%s)", (token,))
            cur.execute("SELECT token FROM smoke")
            assert cur.fetchall() == [(token,)]
    finally:
        conn.close()
    yield f"postgres: INSERT/SELECT ok ({(time.perf_counter() - started) * 1000:.0f} ms)"

    started = time.perf_counter()
    es = Elasticsearch(env["ELASTICSEARCH_URL"])
    index = f"smoke-{token}"
    try:
        es.index(index=index, id=token, document={"token": token}, refresh="wait_for")
        hits = es.search(index=index, query={"term": {"token": token}})["hits"]["hits"]
        assert [h["_id"] for h in hits] == [token], hits
    finally:
        es.options(ignore_status=404).indices.delete(index=index)
        es.close()
    yield f"elasticsearch: index/search ok ({(time.perf_counter() - started) * 1000:.0f} ms)"
