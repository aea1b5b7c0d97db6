"""Plain helpers of the operator's tests (the fixtures are in conftest.py; this folder is
put on ``sys.path`` so test modules can import it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from killkrill_command import KillkrillProcess
from kube_cluster import KubeEnv
from polling import wait_for

from killkrill.dev.process import free_port
from killkrill.operator.kube import KubeClient

API = "killkrill.io/v1alpha1"


def start_operator(
    kube_env: KubeEnv, log_path: Path, *args: str, interval: float = 1.0
) -> tuple[KillkrillProcess, int]:
    """``killkrill operator ARGS`` (ready once its /healthz answers) and its health port."""
    port = free_port()
    proc = KillkrillProcess(
        ["operator", "--interval", str(interval), "--health-port", str(port), *args],
        dict(kube_env.env),
        log_path,
    )

    def healthy() -> bool:
        assert proc.proc.poll() is None, proc.output()[-4000:]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 60, "the operator's /healthz")
    return proc, port


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    """The condition ``kind`` of a Pipeline's status."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return dict(c)
    return None


def pipeline_status_says(
    kube: KubeClient, namespace: str, name: str, check: Callable[[dict[str, Any]], bool]
) -> Callable[[], dict[str, Any] | None]:
    """A ``wait_for`` check: the Pipeline once ``check(pipeline)`` holds (else None)."""

    def read() -> dict[str, Any] | None:
        obj = kube.get(API, "Pipeline", name, namespace)
        return obj if obj is not None and obj.get("status") and check(obj) else None

    return read


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, default=str)[:4000]


def wait_gone(kube: KubeClient, checks: list[tuple[str, str, str, str]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(kube.get(*c) is None for c in checks):
            return
        time.sleep(0.2)
    left = [c for c in checks if kube.get(*c) is not None]
    raise AssertionError(f"still there after {timeout}s: {left}")
