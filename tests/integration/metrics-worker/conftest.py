"""Helpers of the metrics worker's integration tests: samples, DB totals, worker processes."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import redis
from killkrill_command import KillkrillProcess
from polling import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free loopback TCP port."""
    return _free_port


def _sample(name: str, value: Any, labels: dict[str, str] | None = None, **extra: Any) -> bytes:
    """One metric sample as the receivers put it on the stream (``ts=`` sets the timestamp)."""
    body: dict[str, Any] = {"name": name, "value": value, "timestamp": extra.pop("ts", time.time())}
    if labels is not None:
        body["labels"] = labels
    body.update(extra)
    return json.dumps(body).encode()


@pytest.fixture
def add_samples(redis_client: redis.Redis) -> Callable[..., list[str]]:
    """``add_samples(stream, payloads)``: XADD each payload (bytes) as ``data``, pipelined."""

    def add(stream: str, payloads: list[bytes]) -> list[str]:
        ids: list[str] = []
        for start in range(0, len(payloads), 5000):
            pipe = redis_client.pipeline(transaction=False)
            for payload in payloads[start : start + 5000]:
                pipe.xadd(stream, {"data": payload, "v": "1"})
            ids.extend(i.decode() for i in pipe.execute())
        return ids

    return add


@pytest.fixture
def totals(database_schema: str) -> Callable[..., dict[str, tuple[int, float]]]:
    """``totals()``: ``{name: (sum of count, sum of sum)}`` over every bucket, fresh query."""

    def read() -> dict[str, tuple[int, float]]:
        conn = psycopg2.connect(database_schema, connect_timeout=3)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT name, sum(count)::bigint, sum(sum) FROM aggregated_metrics "
                    "GROUP BY name"
                )
                return {name: (int(c), float(s)) for name, c, s in cur.fetchall()}
        finally:
            conn.close()

    return read


class WorkerProcess(KillkrillProcess):
    """``killkrill worker metrics ARGS`` in a subprocess, its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        super().__init__(["worker", "metrics", *args], env, log)


@pytest.fixture
def spawn_worker(
    redis_url: str, database_schema: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """``spawn_worker(*flags, env={...})`` starts a worker process; all are killed at the end."""
    started: list[WorkerProcess] = []

    def spawn(*args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        full_env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_schema,
            **(env or {}),
        }
        log = tmp_path / f"worker-{len(started)}.log"
        worker = WorkerProcess(["--prune-interval", "0", "--ops-port", "0", *args], full_env, log)
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.close()


@pytest.fixture
def make_sample() -> Callable[..., bytes]:
    """``make_sample(name, value, labels=None, ts=now, **fields)`` -> JSON bytes."""
    return _sample


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    """``wait_until(check, timeout, what)``: :func:`polling.wait_for`."""
    return wait_for


def _truncate_metrics(url: str) -> None:
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("TRUNCATE aggregated_metrics, metric_series, metric_applied_entries")
        conn.commit()
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def clean_metrics_tables(database_schema: str) -> Iterator[None]:
    """Every test here starts and ends with empty metrics tables."""
    _truncate_metrics(database_schema)
    yield
    _truncate_metrics(database_schema)
