"""The aggregates at /metrics, scraped by a real Prometheus server (Debian `prometheus`)."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@pytest.fixture
def running_worker(
    spawn_worker, free_port, wait_until, redis_client
) -> Iterator[tuple[int, Callable[[], Any]]]:
    """A long-running worker process on a free ops port; yields (port, the process)."""
    port = free_port()
    worker = spawn_worker("--ops-port", str(port), "--batch-size", "100")
    wait_until(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 20, "worker ready")
    yield port, worker
    worker.signal(15)
    assert worker.wait(30) == 0, worker.output()


@pytest.fixture
def prometheus(tmp_path: Path, free_port) -> Callable[[int], str]:
    """``prometheus(target_port)`` starts a real Prometheus (scrape interval 1 s) scraping
    ``127.0.0.1:<target_port>/metrics``; returns its base URL. Stopped at the end."""
    if not Path(PROMETHEUS).exists():
        pytest.fail(f"{PROMETHEUS} is missing: apt-get install prometheus")
    procs: list[subprocess.Popen[bytes]] = []

    def start(target_port: int) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: killkrill-metrics-worker\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while _get(f"{base}/-/ready")[0] != 200:
            if time.monotonic() > deadline or procs[-1].poll() is not None:
                pytest.fail(
                    "prometheus did not start: " + (tmp_path / "prometheus.log").read_text()
                )
            time.sleep(0.1)
        return base

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(20)


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    status, body = _get(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}")
    assert status == 200, body
    result: list[dict[str, Any]] = orjson.loads(body)["data"]["result"]
    return result


@pytest.mark.integration
def test_worker_serves_probes_and_aggregates(running_worker, add_samples, make_sample, wait_until):
    port, _ = running_worker
    add_samples(
        "metrics-stream",
        [make_sample("queue_depth", v, {"queue": "emails"}, type="gauge") for v in (3, 9, 6)],
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(
        lambda: 'queue_depth_window_count{queue="emails"} 3.0' in _get(f"{base}/metrics")[1],
        20,
        "the aggregate on /metrics",
    )
    _, text = _get(f"{base}/metrics")
    assert "# TYPE queue_depth gauge" in text
    assert 'queue_depth{queue="emails"} 6.0' in text  # the last value by timestamp
    assert 'queue_depth_window_sum{queue="emails"} 18.0' in text
    assert 'queue_depth_window_min{queue="emails"} 3.0' in text
    assert 'queue_depth_window_max{queue="emails"} 9.0' in text
    assert 'killkrill_metrics_worker_samples_applied_total{stream="metrics-stream"} 3.0' in text
    assert _get(f"{base}/healthz") == (200, "ok\n")
    assert _get(f"{base}/readyz") == (200, "ready\n")


@pytest.mark.integration
@pytest.mark.slow
def test_real_prometheus_scrapes_the_aggregates(
    running_worker, prometheus, add_samples, make_sample, wait_until
):
    """Prometheus scrapes the worker; its query API returns our series, values and labels."""
    port, _ = running_worker
    now = time.time()
    add_samples(
        "metrics-stream",
        [
            *(
                make_sample(
                    "http_requests_total",
                    100 + i,
                    {"endpoint": "/api/v1/users"},
                    ts=now + i / 1000,
                    type="counter",
                )
                for i in range(5)
            ),
            make_sample(
                "http_requests_total", 7, {"endpoint": "/api/v1/orders"}, ts=now, type="counter"
            ),
            make_sample(
                "cpu_temperature_celsius",
                61.5,
                {"host": "node-1", "core": "0"},
                ts=now,
                type="gauge",
            ),
        ],
    )
    base = prometheus(port)

    def scraped() -> bool:
        found = _query(base, "http_requests_total")
        return len(found) == 2 and bool(_query(base, "cpu_temperature_celsius"))

    wait_until(scraped, 30, "our series in Prometheus", interval=0.5)

    counters = {
        r["metric"]["endpoint"]: (r["metric"], float(r["value"][1]))
        for r in _query(base, "http_requests_total")
    }
    labels, value = counters["/api/v1/users"]
    assert value == 104.0  # the newest cumulative value
    assert labels["__name__"] == "http_requests_total"
    assert labels["job"] == "killkrill-metrics-worker"
    assert counters["/api/v1/orders"][1] == 7.0
    window = _query(base, 'http_requests_total_window_count{endpoint="/api/v1/users"}')
    assert float(window[0]["value"][1]) == 5.0
    window_sum = _query(base, 'http_requests_total_window_sum{endpoint="/api/v1/users"}')
    assert float(window_sum[0]["value"][1]) == 510.0
    gauge = _query(base, "cpu_temperature_celsius")
    assert gauge[0]["metric"]["host"] == "node-1"
    assert gauge[0]["metric"]["core"] == "0"
    assert float(gauge[0]["value"][1]) == 61.5
    up = _query(base, 'up{job="killkrill-metrics-worker"}')
    assert float(up[0]["value"][1]) == 1.0
