"""Fixtures of the log worker's integration tests: log factories, worker processes, the
local Elasticsearch. Plain helpers are in ``log_worker_helpers.py`` (this folder is put on
``sys.path`` so test modules can import it; the folder name has a dash, so it is no package).

The shared fixtures (``redis_client``, ``elasticsearch_client``, ``log_worker_config``,
``log_worker``) live in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from log_worker_helpers import STREAM, WorkerProcess, free_port, make_log
from run_names import ES_INDEX_PREFIX


@pytest.fixture
def add_logs(redis_client: redis.Redis) -> Callable[..., list[bytes]]:
    """``add_logs(n, start=0, stream=...)``: append ``n`` records in one round trip."""

    def add(n: int, start: int = 0, stream: str = STREAM, **overrides: Any) -> list[bytes]:
        with redis_client.pipeline(transaction=False) as pipe:
            for i in range(start, start + n):
                pipe.xadd(stream, {"data": json.dumps(make_log(i, **overrides))})
            ids: list[bytes] = pipe.execute()
        return ids

    return add


@pytest.fixture
def start_worker(
    redis_url: str, elasticsearch_url: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """``start_worker(consumer_name, *extra_flags)``: a log worker process, killed at teardown."""
    started: list[WorkerProcess] = []

    def start(consumer: str, *flags: str, env: dict[str, str] | None = None) -> WorkerProcess:
        port = free_port()
        log_path = tmp_path / f"worker-{consumer}.log"
        argv = [
            "worker", "logs",
            "--redis-url", redis_url,
            "--elasticsearch-url", elasticsearch_url,
            "--index-prefix", ES_INDEX_PREFIX,
            "--consumer-name", consumer,
            "--ops-port", str(port),
            *flags,
        ]  # fmt: skip
        worker = WorkerProcess(argv, {**os.environ, **(env or {})}, log_path, port)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.close()
