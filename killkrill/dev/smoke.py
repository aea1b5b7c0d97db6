"""A smoke check that each real service stores and returns data."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg2
from elasticsearch import Elasticsearch
from sqlalchemy import select
from sqlalchemy.orm import Session

from killkrill.db import AggregatedMetric, create_engine
from killkrill.dev.pipeline import LocalPipeline, Ports
from killkrill.dev.process import state_dir
from killkrill.errors import DevServiceError
from killkrill.streams import sync_client

__all__ = ["run_pipeline_smoke", "run_smoke"]


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _post(url: str, body: bytes, content_type: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=body, headers={"content-type": content_type})
    with urllib.request.urlopen(request, timeout=30) as resp:
        answer: dict[str, Any] = json.load(resp)
        return answer


def _wait(check: Callable[[], bool], what: str, timeout: float = 60) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise DevServiceError(
                f"pipeline smoke: timed out after {timeout:.0f}s waiting for {what}"
            )
        time.sleep(0.2)
    return time.perf_counter() - started


def run_pipeline_smoke(env: Mapping[str, str], *, logs: int = 1000) -> Iterator[str]:
    """Run the whole pipeline as processes and push sample data through it end to end.

    ``logs`` records go in over HTTP (one batch) and one over syslog UDP, plus five metric
    samples; the check waits until Elasticsearch holds every log exactly once and
    PostgreSQL the aggregate, then stops the pipeline (each process must exit 0).
    """
    token = uuid.uuid4().hex
    ports = Ports(*(_free_port() for _ in range(5)))
    log_path = state_dir() / "pipeline-smoke.log"
    log = log_path.open("wb")
    # Everything given reaches the processes (e.g. KILLKRILL_* settings), the database URL
    # under the name the metrics worker reads.
    pipeline = LocalPipeline({**env, "DATABASE_URL": env["TEST_DATABASE_URL"]}, ports, log=log)
    started = time.perf_counter()
    try:
        pipeline.start()
    except BaseException:
        log.close()
        raise
    yield (
        f"pipeline: receivers, log worker and metrics worker up in "
        f"{time.perf_counter() - started:.1f}s (their logs: {log_path})"
    )
    es = Elasticsearch(env["ELASTICSEARCH_URL"])
    engine = create_engine(env["TEST_DATABASE_URL"])
    try:
        now = datetime.now(UTC)
        records = [
            {
                "timestamp": now.isoformat(),
                "service": "smoke",
                "level": "info",
                "message": f"smoke log {i}",
                "smoke_run": token,
            }
            for i in range(logs)
        ]
        base = f"http://127.0.0.1:{ports.http}"
        sent = time.perf_counter()
        answer = _post(f"{base}/api/v1/logs", orjson.dumps(records), "application/json")
        assert answer["accepted"] == logs, answer
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            line = f"<14>1 {now.isoformat()} smoke-host smoke-syslog - - - run {token}"
            udp.sendto(line.encode(), ("127.0.0.1", ports.syslog))
        samples = [
            {"name": "smoke_requests_total", "value": 100 + i, "labels": {"run": token}}
            for i in range(5)
        ]
        _post(f"{base}/api/v1/metrics", orjson.dumps(samples), "application/json")

        def indexed() -> int:
            es.indices.refresh(index="logs-*", allow_no_indices=True, ignore_unavailable=True)
            found = es.count(index="logs-*", query={"term": {"smoke_run": token}})
            return int(found["count"])

        waited = _wait(lambda: indexed() == logs, f"{logs} logs in Elasticsearch")
        yield f"logs: {logs} sent over HTTP, {indexed()} indexed once in {waited:.1f}s"
        _wait(
            lambda: es.count(index="logs-*", query={"match": {"message": token}})["count"] == 1,
            "the syslog message in Elasticsearch",
        )
        yield "syslog: 1 RFC 5424 message over UDP, indexed with service smoke-syslog"

        def aggregate() -> tuple[int, float] | None:
            with Session(engine) as session:
                row = session.execute(
                    select(AggregatedMetric.count, AggregatedMetric.sum).where(
                        AggregatedMetric.name == "smoke_requests_total",
                        AggregatedMetric.labels["run"].astext == token,
                    )
                ).first()
                return (int(row[0]), float(row[1])) if row else None

        _wait(lambda: (aggregate() or (0, 0.0))[0] == 5, "5 samples aggregated in PostgreSQL")
        count, total = aggregate() or (0, 0.0)
        yield f"metrics: 5 samples aggregated in PostgreSQL: count {count}, sum {total:g}"
        yield f"end to end in {time.perf_counter() - sent:.1f}s"
    finally:
        codes = pipeline.stop()
        log.close()
        es.close()
        engine.dispose()
    if any(codes.values()):
        raise DevServiceError(f"pipeline processes exited uncleanly: {codes}")
    yield f"pipeline: stopped cleanly {codes}"
