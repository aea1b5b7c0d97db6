"""Shared helpers of the receiver benches: start a receiver process, wait, stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

__all__ = ["free_port", "median", "redis_url", "start_receiver", "stop"]


def redis_url() -> str:
    """REDIS_URL, defaulting to the dev instance's db 15 (flushed by the benches)."""
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_receiver(args: list[str], health_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "REDIS_URL": redis_url(),
        "KILLKRILL_BACKPRESSURE__MAX_BACKLOG": "1000000000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "killkrill", "receiver", *args],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(health_url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"receiver did not start; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def client() -> redis.Redis:
    return redis.Redis.from_url(redis_url())
