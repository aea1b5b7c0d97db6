"""Syslog TCP throughput: a sender process streams octet-counted RFC 5424 frames to one
receiver process; the clock stops when the last message is in Redis.

    REDIS_URL=redis://127.0.0.1:6379/15 python bench/receivers/bench_syslog.py [--messages 300000]

Target >= 50,000 messages/s. Flushes the Redis database it is given.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx
from _common import client, free_port, median, start_receiver, stop


def frames(count: int, offset: int) -> bytes:
    out = []
    for i in range(offset, offset + count):
        msg = (
            f"<14>1 2024-01-06T12:00:00.123Z web-{i % 8} nginx {1000 + i % 50} ACCESS "
            f'[req@32473 id="{i}" status="200"] GET /api/v1/users/{i} 200 512 0.012'
        ).encode()
        out.append(f"{len(msg)} ".encode() + msg)
    return b"".join(out)


def send(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(payload)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    redis = client()
    redis.flushdb()
    tmp = Path(tempfile.mkdtemp(prefix="kk-bench-syslog-"))
    port, ops = free_port(), free_port()
    proc = start_receiver(
        ["syslog", "--host", "127.0.0.1", "--port", str(port), "--ops-port", str(ops),
         "--no-udp", "--log-level", "warning"],
        f"http://127.0.0.1:{ops}/healthz",
        tmp / "receiver.log",
    )  # fmt: skip
    per_conn = args.messages // args.connections
    total = per_conn * args.connections
    payloads = [frames(per_conn, c * per_conn) for c in range(args.connections)]
    try:
        results = []
        for run in range(args.runs):
            redis.flushdb()
            start = time.perf_counter()
            threads = [threading.Thread(target=send, args=(port, p)) for p in payloads]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            while redis.xlen("logs-stream") < total:
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            results.append(total / elapsed)
            print(
                f"syslog-tcp run {run + 1}: {total} messages in {elapsed:.2f} s = {total / elapsed:,.0f} msg/s"
            )
        print(f"syslog-tcp MEDIAN: {median(results):,.0f} messages/s")
        print(
            httpx.get(f"http://127.0.0.1:{ops}/metrics").text.count("syslog"), "syslog metric lines"
        )
    finally:
        code = stop(proc)
        redis.flushdb()
        print(f"receiver exited with {code}")


if __name__ == "__main__":
    main()
