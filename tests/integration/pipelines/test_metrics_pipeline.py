"""Metrics end to end: HTTP JSON and Prometheus text -> receivers -> Redis -> metrics worker
-> PostgreSQL aggregates -> the worker's /metrics."""

from __future__ import annotations

import time

import httpx
import pytest
from polling import wait_for
from sqlalchemy.orm import Session

from killkrill.db import AggregatedMetric
from killkrill.dev.pipeline import LocalPipeline

pytestmark = [pytest.mark.requires_db, pytest.mark.slow]


def test_samples_are_aggregated_and_exposed(pipeline: LocalPipeline, db_session: Session) -> None:
    now = int(time.time())
    samples = [
        {
            "name": "http_requests_total",
            "value": 100 + i,
            "labels": {"endpoint": "/api/v1/users"},
            "timestamp": now,
            "type": "counter",
        }
        for i in range(5)
    ]
    text = '# TYPE queue_depth gauge\nqueue_depth{queue="mail"} 7\n'
    ports = pipeline.ports  # type: ignore[attr-defined]
    with httpx.Client(base_url=f"http://127.0.0.1:{ports.http}", timeout=30) as http:
        assert http.post("/api/v1/metrics", json=samples).status_code == 200
        answer = http.post(
            "/api/v1/metrics", content=text, headers={"content-type": "text/plain; version=0.0.4"}
        )
        assert answer.status_code == 200, answer.text

    def aggregated() -> AggregatedMetric | None:
        db_session.rollback()  # see the worker's newest commits
        return (
            db_session.query(AggregatedMetric).filter_by(name="http_requests_total").one_or_none()
        )

    agg = wait_for(lambda: (a := aggregated()) is not None and a.count == 5 and a, what="5 samples")
    # 100+101+102+103+104 = 510 (the guide writes 502 beside that sum: a typo)
    assert (agg.sum, agg.min, agg.max, agg.labels) == (510, 100, 104, {"endpoint": "/api/v1/users"})

    def exposition() -> str | None:
        body = httpx.get(f"http://127.0.0.1:{ports.metrics_worker_ops}/metrics").text
        return body if 'queue_depth{queue="mail"} 7.0' in body else None

    body = wait_for(exposition, what="queue_depth on the worker's /metrics")
    assert 'endpoint="/api/v1/users"' in body
