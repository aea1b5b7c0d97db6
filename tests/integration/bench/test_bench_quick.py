"""`killkrill bench e2e doc-shape --quick`: the harness runs end to end and writes what it
promises; a SIGTERM ends a run as Ctrl-C does.

Runs the real command (its own Redis and Elasticsearch on shifted ports in a home of its
own, rsyslog and syslog-ng as peers) with tiny sizes, then reads ``results.json``: the keys
the README documents, every message KillKrill was sent indexed exactly once (with and
without Elasticsearch paused), the charts, and nothing left running. No timing is asserted:
figures of a shared CI machine mean nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from killkrill.dev.process import pid_alive, port_open

CONTENDERS = ("killkrill", "rsyslog", "syslog-ng")
E2E_KEYS = {"msgs_per_s", "cpu_s_per_100k", "peak_rss_mib", "sent", "indexed", "lost"}
QUICK_MESSAGES = 5_000


def _free_offset() -> int:
    for offset in range(2100, 2600, 23):
        if not any(port_open(base + offset) for base in (6379, 5432, 9200, 19300)):
            return offset
    pytest.fail("no free ports for the bench's own services")


@pytest.fixture
def bench_home() -> Iterator[Path]:
    # Under /tmp, not pytest's tmp_path: Elasticsearch's service user must enter it.
    home = Path(tempfile.mkdtemp(prefix="kk-bench-test-", dir="/tmp"))
    home.chmod(0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_e2e_writes_results_and_killkrill_loses_nothing(
    tmp_path: Path, bench_home: Path
) -> None:
    results_dir = tmp_path / "results"
    offset = _free_offset()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "ELASTICSEARCH_URL", "DATABASE_URL", "TEST_DATABASE_URL")
    }
    argv = [sys.executable, "-m", "killkrill", "bench", "e2e", "doc-shape", "--quick",
            "--results-dir", str(results_dir), "--home", str(bench_home),
            "--port-offset", str(offset)]  # fmt: skip
    proc = subprocess.run(
        argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert "== e2e:" in proc.stdout and "== e2e-pause:" in proc.stdout, proc.stdout

    latest = results_dir / "latest"
    doc = json.loads((latest / "results.json").read_text())
    dated = [d for d in results_dir.iterdir() if d.name.endswith("-quick")]
    assert len(dated) == 1
    assert json.loads((dated[0] / "results.json").read_text()) == doc
    assert doc["version"] == 1 and doc["quick"] is True and doc["failed"] == {}
    assert doc["machine"]["elasticsearch"].startswith("9.")

    for scenario in ("e2e", "e2e-pause"):
        entry = doc["scenarios"][scenario]
        assert entry["reference"] == "rsyslog"
        assert set(entry["contenders"]) == set(CONTENDERS)
        for name in CONTENDERS:
            figures = entry["contenders"][name]
            assert set(figures) >= E2E_KEYS, (scenario, name, sorted(figures))
            assert len(figures["rounds"]) == 1
            assert figures["sent"] == QUICK_MESSAGES, (scenario, name, figures)
        killkrill = entry["contenders"]["killkrill"]
        assert killkrill["lost"] == 0, (scenario, killkrill)
        assert killkrill["indexed"] == QUICK_MESSAGES, (scenario, killkrill)
        assert killkrill["duplicates"] == 0, (scenario, killkrill)
        assert (latest / f"{scenario}.png").stat().st_size > 1000
    e2e = doc["scenarios"]["e2e"]["contenders"]
    assert e2e["rsyslog"]["ratio"] == 1.0
    assert all(e2e[name]["msgs_per_s"] > 0 for name in CONTENDERS)
    assert e2e["killkrill"]["cpu_s_per_100k.redis"] >= 0  # Redis counted as KillKrill's
    shapes = doc["scenarios"]["doc-shape"]["contenders"]
    assert set(shapes) == {"peer", "killkrill", "killkrill-lean", "killkrill-dynamic"}
    assert shapes["peer"]["ratio"] == 1.0
    assert shapes["killkrill-lean"]["doc_bytes"] < shapes["killkrill"]["doc_bytes"]
    assert all(s["es_cpu_s_per_100k"] > 0 for s in shapes.values())

    # The services the bench started are stopped again; no peer is left running.
    assert not port_open(9200 + offset) and not port_open(6379 + offset)
    leftovers = subprocess.run(
        ["pgrep", "-f", "kk-bench-.*(rsyslog|syslog-ng)"], capture_output=True, text=True
    ).stdout.split()
    assert not [p for p in leftovers if pid_alive(int(p))]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_http_and_metrics_measure_against_their_references(
    tmp_path: Path, bench_home: Path
) -> None:
    """The scenarios that drive wrk, redis-benchmark, Prometheus and nginx (Redis and
    PostgreSQL only: no Elasticsearch to start)."""
    results_dir = tmp_path / "results"
    offset = _free_offset()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "ELASTICSEARCH_URL", "DATABASE_URL", "TEST_DATABASE_URL")
    }
    argv = [sys.executable, "-m", "killkrill", "bench", "http", "metrics", "--quick",
            "--no-charts", "--results-dir", str(results_dir), "--home", str(bench_home),
            "--port-offset", str(offset)]  # fmt: skip
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=840, check=False)
    assert proc.returncode == 0, proc.stderr[-5000:]

    doc = json.loads((results_dir / "latest" / "results.json").read_text())
    scenarios = doc["scenarios"]
    assert set(scenarios) == {"http-1", "http-100", "http-1000", "metrics", "remote-write"}
    for batch in (1, 100, 1000):
        http = scenarios[f"http-{batch}"]["contenders"]
        assert set(http) == {"killkrill", "redis-benchmark"}
        assert http["killkrill"]["records_per_s"] > 0 and http["redis-benchmark"]["ratio"] == 1.0
    metrics = scenarios["metrics"]["contenders"]
    assert metrics["worker"]["samples_per_s"] > 0 and metrics["bare-upsert"]["samples_per_s"] > 0
    remote = scenarios["remote-write"]["contenders"]
    assert set(remote) == {"killkrill", "null"}
    assert remote["killkrill"]["delivered_total"] > 0 and remote["null"]["delivered_total"] > 0
    assert remote["killkrill"]["lost"] == 0, remote["killkrill"]
    assert remote["killkrill"]["dead_letters"] == 0
    assert not port_open(6379 + offset) and not port_open(5432 + offset)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_stops_the_run_and_everything_it_started(bench_home: Path) -> None:
    """Like Ctrl-C: the contender's processes and the bench's own services are stopped (the
    default SIGTERM left the receiver and Redis running)."""
    offset = _free_offset()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    argv = [sys.executable, "-m", "killkrill", "bench", "http", "--quick", "--no-charts",
            "--home", str(bench_home), "--port-offset", str(offset),
            "--results-dir", str(bench_home / "results")]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    started: list[int] = []
    try:
        for line in proc.stderr:  # the first round's line: the receiver is running
            if "http-1 warm-up" in line or "http-1 round" in line:
                break
        started = _descendants(proc.pid)
        assert started, "the bench had started no process"
        assert port_open(6379 + offset)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not [p for p in started if pid_alive(p)], "processes left running"
    assert not port_open(6379 + offset), "the bench's Redis left running"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
