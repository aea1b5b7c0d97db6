"""Plain helpers of the log worker's integration tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import redis
from elasticsearch import Elasticsearch
from es_queries import count_docs
from killkrill_command import KillkrillProcess
from run_names import ES_INDEX_PREFIX

STREAM = "logs-stream"
DEAD_LETTER = "logs-stream:dead-letter"
GROUP = "log-worker"
REPO = Path(__file__).resolve().parents[3]


def make_log(i: int, **overrides: Any) -> dict[str, Any]:
    """A realistic log record with a unique ``seq``."""
    log = {
        "timestamp": f"2024-01-06T12:{(i // 60) % 60:02d}:{i % 60:02d}Z",
        "service": f"service-{i % 10}",
        "level": ["info", "warn", "error"][i % 3],
        "message": f"Log message {i}",
        "seq": i,
    }
    log.update(overrides)
    return log


def es_count(
    es: Elasticsearch, index: str = f"{ES_INDEX_PREFIX}-*", query: dict[str, Any] | None = None
) -> int | None:
    """Documents in ``index`` after a refresh (no sleeps); ``None`` while a new daily index
    is not searchable yet (see ``es_queries.count_docs``)."""
    return count_docs(es, index, query)


def pending_count(client: redis.Redis, stream: str = STREAM, group: str = GROUP) -> int:
    """Entries delivered to ``group`` and not acknowledged (0 when there is no group)."""
    try:
        return int(client.xpending(stream, group)["pending"])
    except redis.ResponseError:
        return 0


def ops_get(port: int, path: str) -> tuple[int, str]:
    """``GET http://127.0.0.1:<port><path>``: the status and the body (errors too)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess(KillkrillProcess):
    """``killkrill worker logs`` in a subprocess, its output in a file, its ops port known."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path, ops_port: int) -> None:
        super().__init__(args, env, log_path)
        self.ops_port = ops_port
