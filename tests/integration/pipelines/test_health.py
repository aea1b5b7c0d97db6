"""Data-plane health from real conditions: a backlog nobody drains, Elasticsearch stopped
while logs flow, a poison record, a drained pipeline, a killed worker - each verdict
asserted with its figures, read by ``killkrill.health`` and ``killkrill status``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import yaml
from killkrill_command import REPO, KillkrillProcess
from polling import wait_for
from run_names import ES_INDEX_PREFIX

from killkrill.config.pipeline import Pipeline, component_settings
from killkrill.health import (
    DEAD_LETTERING,
    HEALTHY,
    NO_WORKERS,
    SINK_DEGRADED,
    STALLED,
    HealthTarget,
    PipelineHealth,
    Thresholds,
    check,
)

QUICK = Thresholds(stalled_seconds=1.0, error_window_seconds=30.0)
WORKER_ENV = {
    "KILLKRILL_CONSUMER__HEARTBEAT_SECONDS": "0.5",
    "KILLKRILL_CONSUMER__BLOCK_MS": "200",
    "KILLKRILL_RETRY__MAX_RETRIES": "0",
    "KILLKRILL_RETRY__MAX_BACKOFF": "1",
    "KILLKRILL_REDIS__SOCKET_TIMEOUT": "1",
    "KILLKRILL_ELASTICSEARCH__REQUEST_TIMEOUT": "1",
    "KILLKRILL_ELASTICSEARCH__INDEX_PREFIX": ES_INDEX_PREFIX,
}


def _log(i: int, **extra: Any) -> bytes:
    record = {
        "timestamp": "2024-01-06T12:00:00Z",
        "service": "health",
        "level": "info",
        "message": f"log {i}",
        **extra,
    }
    return json.dumps(record).encode()


@pytest.fixture
def name() -> str:
    """A pipeline of this test's own: its keys carry its name, so no other test sees them."""
    return f"health-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def service_env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, elasticsearch_url: str, database_schema: str
) -> dict[str, str]:
    """The run's services, as every process of the pipeline (and the health check) sees them."""
    env = {
        "REDIS_URL": redis_url,
        "ELASTICSEARCH_URL": elasticsearch_url,
        "DATABASE_URL": database_schema,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def health(name: str, service_env: dict[str, str]) -> Callable[..., PipelineHealth]:
    """``health(thresholds=QUICK)``: the pipeline's health, read now."""
    pipeline = Pipeline.model_validate({"metadata": {"name": name}})
    target = HealthTarget.from_settings(component_settings(pipeline).for_this_process())

    def read(thresholds: Thresholds = QUICK) -> PipelineHealth:
        return asyncio.run(check(target, thresholds))

    return read


@pytest.fixture
def workers(
    name: str, service_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[[], dict[str, KillkrillProcess]]]:
    """``workers()``: a log worker and a metrics worker of the test's pipeline, by kind."""
    started: list[KillkrillProcess] = []

    def start() -> dict[str, KillkrillProcess]:
        env = {**os.environ, **service_env, **WORKER_ENV}
        out = {}
        for kind, args in (
            ("log-worker", ["worker", "logs"]),
            ("metrics-worker", ["worker", "metrics", "--prune-interval", "0"]),
        ):
            command = [*args, "--pipeline", name, "--ops-port", "0"]
            out[kind] = KillkrillProcess(command, env, tmp_path / f"{kind}-{len(started)}.log")
            started.append(out[kind])
        return out

    yield start
    for proc in started:
        proc.close()


def _ops_port(proc: KillkrillProcess) -> int:
    [started] = [line for line in proc.log_lines() if "ops_port" in line]
    return int(started["ops_port"])


def _stopped_cleanly(running: dict[str, KillkrillProcess]) -> bool:
    return all(proc.stop() == 0 for proc in running.values())


def _stream(name: str) -> str:
    return f"{name}:logs-stream"


def _add(client: redis.Redis, name: str, n: int, **extra: Any) -> None:
    with client.pipeline(transaction=False) as pipe:
        for i in range(n):
            pipe.xadd(_stream(name), {"data": _log(i, **extra)})
        pipe.execute()


def _wait_verdict(
    health: Callable[..., PipelineHealth],
    verdict: str,
    timeout: float = 30,
    also: Callable[[PipelineHealth], bool] = lambda report: True,
) -> PipelineHealth:
    """The first report with ``verdict`` (and for which ``also`` holds)."""
    seen: list[PipelineHealth] = []

    def reached() -> bool:
        seen.append(health())
        return seen[-1].verdict == verdict and also(seen[-1])

    try:
        wait_for(reached, timeout, f"verdict {verdict}")
    except BaseException:
        print("last report:", seen[-1].as_dict() if seen else None)
        raise
    return seen[-1]


def test_a_backlog_nobody_drains_is_stalled_then_healthy_once_drained(
    name: str, redis_client: redis.Redis, health: Callable[..., PipelineHealth], workers: Any
) -> None:
    running = workers()
    wait_for(lambda: len(health().workers) == 2, 30, "both workers' first heartbeats")
    worker = running["log-worker"]
    worker.signal(signal.SIGSTOP)  # alive (its heartbeat not expired yet), doing nothing
    try:
        _add(redis_client, name, 300)
        report = _wait_verdict(health, STALLED)
        [logs] = [s for s in report.streams if s.name == _stream(name)]
        # a read blocked when the worker stopped may have had a few delivered to it
        assert logs.length == logs.lag + logs.pending == 300
        assert f"{logs.lag} waiting and {logs.pending} pending" in report.reason
        assert "1 live log-worker" in report.reason
    finally:
        worker.signal(signal.SIGCONT)
    # Healthy comes while the backlog is still in flight; then it drains, staying Healthy.
    _wait_verdict(health, HEALTHY)

    def drained(report: PipelineHealth) -> bool:
        return all(s.length == 0 for s in report.streams if s.name == _stream(name))

    report = _wait_verdict(health, HEALTHY, also=drained)
    [logs] = [s for s in report.streams if s.name == _stream(name)]
    assert (logs.length, logs.lag, logs.pending) == (0, 0, 0)
    [beat] = [w for w in report.workers if w.kind == "log-worker"]
    assert beat.delivered == 300 and beat.last_success_at is not None
    es = [s for s in report.sinks if s.name == "elasticsearch"]
    assert es and es[0].state == "ok" and es[0].last_success_at is not None
    # each worker exports the same facts to Prometheus
    for kind, proc in running.items():
        metrics = httpx.get(f"http://127.0.0.1:{_ops_port(proc)}/metrics", timeout=5).text
        for family in (
            "killkrill_stream_lag_entries",
            "killkrill_stream_oldest_pending_seconds",
            "killkrill_dead_letter_entries",
            "killkrill_sink_last_success_timestamp_seconds",
        ):
            assert f"{family}{{" in metrics, (kind, family)
    assert (
        f'killkrill_stream_lag_entries{{stream="{_stream(name)}"}} 0.0'
        in httpx.get(f"http://127.0.0.1:{_ops_port(running['log-worker'])}/metrics", timeout=5).text
    )
    assert _stopped_cleanly(running)


def test_elasticsearch_stopped_while_logs_flow_is_sink_degraded_naming_the_error(
    name: str,
    redis_client: redis.Redis,
    health: Callable[..., PipelineHealth],
    workers: Any,
    managed_elasticsearch: Any,
) -> None:
    running = workers()
    _add(redis_client, name, 50)
    _wait_verdict(health, HEALTHY)
    pid = managed_elasticsearch.pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        _add(redis_client, name, 50)
        report = _wait_verdict(health, SINK_DEGRADED)
        assert "elasticsearch" in report.reason
        assert "Timeout" in report.reason or "timed out" in report.reason, report.reason
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait_verdict(health, HEALTHY, timeout=60)
    assert _stopped_cleanly(running)


def test_a_poison_record_is_dead_lettering_with_depth_1(
    name: str, redis_client: redis.Redis, health: Callable[..., PipelineHealth], workers: Any
) -> None:
    running = workers()
    _add(redis_client, name, 5)
    redis_client.xadd(_stream(name), {"data": b"{not json"})
    report = _wait_verdict(health, DEAD_LETTERING)
    [logs] = [s for s in report.streams if s.name == _stream(name)]
    assert logs.dead_letters == 1
    assert "1 dead letter" in report.reason and "not valid JSON" in report.reason
    assert _stopped_cleanly(running)


def test_a_killed_worker_disappears_when_its_heartbeat_expires(
    name: str, health: Callable[..., PipelineHealth], workers: Any
) -> None:
    running = workers()
    wait_for(lambda: len(health().workers) == 2, 30, "both workers' first heartbeats")
    _wait_verdict(health, HEALTHY)
    running["log-worker"].signal(signal.SIGKILL)
    report = _wait_verdict(health, NO_WORKERS, timeout=15)  # six beats of 0.5 s
    assert [w.kind for w in report.workers] == ["metrics-worker"]
    assert "no live log-worker" in report.reason


def test_status_json_says_what_redis_says(
    name: str, redis_client: redis.Redis, service_env: dict[str, str], tmp_path: Path
) -> None:
    """``killkrill status --json`` against XLEN / XINFO GROUPS / XPENDING of the same
    streams; the table shows the same columns; exit 1 while not healthy."""
    stream = _stream(name)
    _add(redis_client, name, 40)
    redis_client.xgroup_create(stream, f"{name}:log-worker", id="0")
    redis_client.xreadgroup(f"{name}:log-worker", "gone", {stream: ">"}, count=15)
    document = tmp_path / "pipeline.yaml"
    document.write_text(yaml.safe_dump({"kind": "Pipeline", "metadata": {"name": name}}))
    env = {**os.environ, **service_env}

    def status(*args: str) -> tuple[int, str]:
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-m", "killkrill", "status", "-f", str(document), *args],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False,
        )  # fmt: skip
        sys.stdout.write(done.stdout + done.stderr)
        return done.returncode, done.stdout

    code, out = status("--json")
    assert code == 1  # no worker, entries waiting
    [report] = json.loads(out)["pipelines"]
    assert report["name"] == name and report["verdict"] in (NO_WORKERS, STALLED)
    [logs] = [s for s in report["streams"] if s["name"] == stream]
    [group] = redis_client.xinfo_groups(stream)
    assert logs["length"] == redis_client.xlen(stream) == 40
    assert logs["lag"] == group["lag"] == 25
    assert logs["pending"] == redis_client.xpending(stream, f"{name}:log-worker")["pending"] == 15
    assert [c["name"] for c in logs["consumers"]] == ["gone"]
    assert logs["oldest_pending_seconds"] >= 0 and logs["dead_letters"] == 0
    assert {"workers", "sinks", "reason"} <= set(report)

    code, table = status()
    assert code == 1
    for column in ("stream", "length", "lag", "pending", "oldest", "DLQ", "consumers", "success"):
        assert column in table
    assert f"pipeline {name}" in table
