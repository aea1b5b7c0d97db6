"""The bench's own Redis, PostgreSQL and Elasticsearch.

They are the services of ``killkrill dev services``, run as a second set beside the
developer's: their own state directory (``KILLKRILL_DEV_HOME``, default
``/tmp/killkrill-bench-<uid>``) and ports shifted by ``KILLKRILL_DEV_PORT_OFFSET`` (default
500: Redis 6879, PostgreSQL 5932, Elasticsearch 9700). Nothing the bench does (flushing
Redis, truncating tables, deleting indices, pausing Elasticsearch with SIGSTOP) can reach the
services other test runs use, and the CPU time Redis spends is the bench's alone.

:meth:`BenchServices.up` starts what is not running yet; :meth:`BenchServices.down` stops only
what ``up`` started (a set left running by ``--keep-services`` is reused and left alone).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from killkrill.errors import DevServiceError

__all__ = ["DEFAULT_PORT_OFFSET", "BenchServices", "default_home"]

DEFAULT_PORT_OFFSET = 500
_GIVEN = ("REDIS_URL", "TEST_DATABASE_URL", "DATABASE_URL", "ELASTICSEARCH_URL")


def default_home() -> Path:
    return Path("/tmp") / f"killkrill-bench-{os.getuid()}"


@dataclass
class BenchServices:
    """URLs and processes of the bench's services (see the module doc)."""

    home: Path
    port_offset: int
    redis_url: str = ""
    database_url: str = ""
    elasticsearch_url: str = ""
    started: list[str] = field(default_factory=list)
    """The services :meth:`up` started (and :meth:`down` stops)."""

    @property
    def env(self) -> dict[str, str]:
        """The environment of ``killkrill dev services`` for this set."""
        base = {k: v for k, v in os.environ.items() if k not in _GIVEN}
        return {
            **base,
            "KILLKRILL_DEV_HOME": str(self.home),
            "KILLKRILL_DEV_PORT_OFFSET": str(self.port_offset),
        }

    def _services(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "killkrill", "dev", "services", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self, names: Sequence[str] = ("redis", "postgres", "elasticsearch")) -> str:
        """Start those of ``names`` not running; read the URLs. Returns what the manager
        said. An Elasticsearch left stopped (SIGSTOP) by a bench that was killed mid-pause
        is resumed first."""
        self._resume_elasticsearch()
        proc = self._services("up", *names)
        if proc.returncode != 0:
            raise DevServiceError(f"the bench's services did not start:\n{proc.stderr[-3000:]}")
        self.started = [
            line.split(":", 1)[0] for line in proc.stderr.splitlines() if ": started at " in line
        ]
        urls: dict[str, str] = {}
        for line in self._services("env", *names).stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            urls[key] = shlex.split(value)[0] if value else ""
        self.redis_url = urls.get("REDIS_URL", "")
        self.database_url = urls.get("DATABASE_URL", "")
        self.elasticsearch_url = urls.get("ELASTICSEARCH_URL", "")
        return proc.stderr.strip()

    def _resume_elasticsearch(self) -> None:
        status = self._services("status", "elasticsearch").stdout
        match = re.search(r"pid (\d+)", status)
        if match:
            with contextlib.suppress(OSError):
                os.kill(int(match.group(1)), signal.SIGCONT)

    def down(self) -> None:
        """Stop the services :meth:`up` started; leave the others running."""
        if self.started:
            self._services("down", *self.started)
            self.started = []

    def redis_db(self, db: int) -> str:
        """The bench Redis's URL with database ``db``."""
        base, _, _ = self.redis_url.rpartition("/")
        return f"{base}/{db}"

    def redis_pid(self) -> int:
        client = redis.Redis.from_url(self.redis_url)
        try:
            info: dict[str, Any] = client.info("server")
        finally:
            client.close()
        return int(info["process_id"])

    def elasticsearch_pid(self) -> int:
        """The pid of the (only) node of the bench's Elasticsearch."""
        resp = httpx.get(f"{self.elasticsearch_url}/_nodes/_local/process", timeout=30)
        resp.raise_for_status()
        nodes = resp.json()["nodes"]
        return int(next(iter(nodes.values()))["process"]["id"])

    def elasticsearch_version(self) -> str:
        # The integ-test distribution answers no `GET /`.
        resp = httpx.get(f"{self.elasticsearch_url}/_nodes/_local", timeout=30)
        resp.raise_for_status()
        return str(next(iter(resp.json()["nodes"].values()))["version"])

    def redis_version(self) -> str:
        client = redis.Redis.from_url(self.redis_url)
        try:
            info: dict[str, Any] = client.info("server")
        finally:
            client.close()
        return str(info["redis_version"])
