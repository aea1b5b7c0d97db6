"""What every scenario gets: the bench's services, a work directory, sizes, and the helpers
that keep the run's Elasticsearch indices and Redis keys its own."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from killkrill.bench.results import ScenarioResult
from killkrill.bench.services import BenchServices

__all__ = ["BenchContext", "Echo", "rotate"]

Echo = Callable[[str], None]

KILLKRILL = [sys.executable, "-m", "killkrill"]
"""How the bench starts KillKrill's processes (the same interpreter and package)."""


def rotate(items: list[str], n: int) -> list[str]:
    """``items`` rotated by ``n``: round ``n`` starts with a different contender, so none
    always runs first (on a cold cache) or last."""
    if not items:
        return items
    k = n % len(items)
    return items[k:] + items[:k]


@dataclass
class BenchContext:
    """Shared by the scenarios of one run."""

    services: BenchServices
    workdir: Path
    run_id: str
    quick: bool
    rounds: int
    pause_rounds: int = 1
    """Rounds of the scenarios that take long per round whatever the sizes (Elasticsearch
    paused, fixed-rate latency, Prometheus remote_write)."""
    echo: Echo = print
    contenders: tuple[str, ...] = ("killkrill", "rsyslog", "syslog-ng")
    """Syslog contenders of the e2e and latency scenarios (``--contender``)."""
    warmup: bool = True
    """Run one round first that is not counted (a cold Elasticsearch is slower)."""
    done: dict[str, ScenarioResult] = field(default_factory=dict)
    """Results of the scenarios run so far (latency reads e2e's)."""
    _http: httpx.Client | None = None

    # --- rounds ----------------------------------------------------------------------------

    @property
    def total_rounds(self) -> int:
        """Rounds to run: the warm-up one (when on) and the counted ones."""
        return int(self.warmup) + self.rounds

    def counted(self, n: int) -> bool:
        """Whether round ``n`` (0-based, of :attr:`total_rounds`) counts."""
        return n >= int(self.warmup)

    def round_label(self, key: str, n: int) -> str:
        if not self.counted(n):
            return f"{key} warm-up"
        return f"{key} round {n + 1 - int(self.warmup)}/{self.rounds}"

    # --- Elasticsearch ---------------------------------------------------------------------

    @property
    def es_url(self) -> str:
        return self.services.elasticsearch_url

    @property
    def es(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.es_url, timeout=120)
        return self._http

    def index_prefix(self, *parts: str) -> str:
        """``kkbench-<run>-<parts>``: Elasticsearch names of this run only."""
        return "-".join(("kkbench", self.run_id, *parts)).lower()

    def delete_indices(self, pattern: str) -> None:
        self.es.delete(
            f"/{pattern}", params={"ignore_unavailable": "true", "allow_no_indices": "true"}
        )

    def put_peer_template(self) -> None:
        """Index settings and mappings of the peers' indices (``kkbench-<run>-*``): one
        shard, no replica, refreshed every second, as KillKrill's own template sets for its
        indices (which win over this one by priority)."""
        keyword = {"type": "keyword", "ignore_above": 1024}
        body: dict[str, Any] = {
            "index_patterns": [f"kkbench-{self.run_id}-*"],
            "priority": 10,
            "template": {
                "settings": {
                    "index": {
                        "number_of_shards": 1,
                        "number_of_replicas": 0,
                        "refresh_interval": "1s",
                    }
                },
                "mappings": {
                    "properties": {
                        "@timestamp": {"type": "date"},
                        "message": {"type": "text"},
                        **{
                            f: keyword
                            for f in ("host", "app", "procid", "msgid", "severity", "facility")
                        },
                    }
                },
            },
        }
        resp = self.es.put(f"/_index_template/kkbench-{self.run_id}", json=body)
        resp.raise_for_status()

    def cleanup_elasticsearch(self) -> None:
        """Delete this run's indices and index templates."""
        self.delete_indices(f"kkbench-{self.run_id}-*")
        self.es.delete(f"/_index_template/kkbench-{self.run_id}")
        self.es.delete(f"/_index_template/killkrill-kkbench-{self.run_id}-*")

    def refresh(self, pattern: str) -> None:
        self.es.post(
            f"/{pattern}/_refresh",
            params={"ignore_unavailable": "true", "allow_no_indices": "true"},
        )

    # --- Redis ----------------------------------------------------------------------------

    REDIS_DB = 3
    """The database of the bench's own Redis that KillKrill's processes use."""

    @property
    def redis_url(self) -> str:
        return self.services.redis_db(self.REDIS_DB)

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def flush_redis(self) -> None:
        client = self.redis()
        try:
            client.flushdb()
        finally:
            client.close()

    # --- processes ------------------------------------------------------------------------

    def log(self, name: str) -> Path:
        path = self.workdir / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        self.echo(f"{what} ...")
        yield
        self.echo(f"{what}: {time.monotonic() - started:.1f}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
