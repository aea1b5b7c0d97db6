"""HTTP ingest throughput: wrk (a second process) posting to one receiver process.

    REDIS_URL=redis://127.0.0.1:6379/15 python bench/receivers/bench_http.py [--runs 3] [--seconds 10]

Scenarios: batches of 1,000 log records per request (target >= 50,000 records/s) and one
record per request (target >= 3,000 req/s). Each run starts from an empty stream; the
stream length is checked against what wrk counted, so records/s are records in Redis.
Needs `wrk` (Debian: wrk). Flushes the Redis database it is given.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import orjson
from _common import client, free_port, median, start_receiver, stop


def records(n: int) -> list[dict[str, object]]:
    return [
        {
            "timestamp": f"2024-01-06T12:00:{i % 60:02d}Z",
            "service": f"service-{i % 10}",
            "level": ["info", "warn", "error"][i % 3],
            "message": f"Log message {i}: GET /api/v1/users/{i} answered 200 in 12 ms",
            "request_id": f"req-{i:08d}",
        }
        for i in range(n)
    ]


def run_wrk(url: str, body: Path, seconds: int, connections: int) -> tuple[float, int]:
    script = Path(__file__).with_name("post.lua")
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        env={"BODY_FILE": str(body), "BODY_PATH": "/api/v1/logs", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return rps, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    redis = client()
    redis.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="kk-bench-http-"))
    port = free_port()
    proc = start_receiver(
        ["http", "--no-auth", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        f"http://127.0.0.1:{port}/healthz",
        tmp / "receiver.log",
    )
    try:
        scenarios = [("batch-1000", 1000, 8), ("single", 1, 32)]
        for name, size, connections in scenarios:
            body = tmp / f"{name}.json"
            batch = records(size)
            body.write_bytes(orjson.dumps(batch if size > 1 else batch[0]))
            results = []
            for run in range(args.runs):
                redis.flushdb()
                rps, done = run_wrk(f"http://127.0.0.1:{port}/", body, args.seconds, connections)
                stored = redis.xlen("logs-stream")
                assert stored >= done * size, (stored, done * size)
                results.append(rps * size)
                print(f"{name} run {run + 1}: {rps:,.0f} req/s = {rps * size:,.0f} records/s")
            unit = "records/s" if size > 1 else "req/s (= records/s)"
            print(f"{name} MEDIAN: {median(results):,.0f} {unit}")
    finally:
        code = stop(proc)
        redis.flushdb()
        print(f"receiver exited with {code}")


if __name__ == "__main__":
    main()
