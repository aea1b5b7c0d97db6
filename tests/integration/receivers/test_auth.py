"""API keys over HTTP: missing, wrong, right, and right-but-not-for-this-endpoint."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from polling import wait_for

from killkrill.config import hash_api_key

LOG = {"timestamp": "2024-01-06T12:00:00Z", "service": "api", "level": "info", "message": "m"}
SAMPLE = {"name": "up", "value": 1}


@pytest.fixture
async def secured(
    make_client: Callable[..., httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    keys = [
        {"name": "shipper", "key": "log-key", "scopes": ["logs"]},
        {"name": "all", "sha256": hash_api_key("all-key")},
    ]
    async with make_client(**{"auth.enabled": True, "auth.keys": keys}) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/api/v1/logs", LOG, {}, 401),
        ("/api/v1/logs", LOG, {"authorization": "Bearer nope"}, 401),
        ("/api/v1/logs", LOG, {"x-api-key": "nope"}, 401),
        ("/api/v1/logs", LOG, {"authorization": "Token log-key"}, 401),
        ("/api/v1/metrics", SAMPLE, {"authorization": "Bearer log-key"}, 403),
        ("/api/v1/logs", LOG, {"authorization": "Bearer log-key"}, 200),
        ("/api/v1/logs", LOG, {"x-api-key": "log-key"}, 200),
        ("/api/v1/metrics", SAMPLE, {"x-api-key": "all-key"}, 200),
    ],
)
async def test_keys(
    secured: httpx.AsyncClient,
    redis_client: redis.Redis,
    path: str,
    body: dict[str, object],
    headers: dict[str, str],
    status: int,
) -> None:
    response = await secured.post(path, json=body, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert "www-authenticate" in response.headers
        assert "API key" in response.json()["message"]
        assert redis_client.dbsize() == 0
    elif status == 403:
        assert "shipper" in response.json()["message"] and "logs" in response.json()["message"]
        assert redis_client.dbsize() == 0
    else:
        assert redis_client.dbsize() == 1


async def test_health_endpoints_need_no_key(secured: httpx.AsyncClient) -> None:
    assert (await secured.get("/healthz")).status_code == 200
    assert (await secured.get("/readyz")).status_code == 200
    assert (await secured.get("/metrics")).status_code == 200


def _keys_file(path: Path, *keys: str) -> None:
    """Replace the keys file the way a Secret update does: a new file renamed into place."""
    tmp = path.with_suffix(".new")
    tmp.write_text("keys:\n" + "".join(f"  - {{name: {k}, key: {k}}}\n" for k in keys))
    os.replace(tmp, path)


@pytest.mark.parametrize("trigger", ["file-watch", "sighup"])
def test_a_changed_keys_file_is_read_without_a_restart(
    receiver_process: Callable[..., Any],
    redis_client: redis.Redis,
    tmp_path: Path,
    port: int,
    trigger: str,
) -> None:
    keys = tmp_path / "keys.yaml"
    _keys_file(keys, "old-key")
    proc = receiver_process(
        "http", "--host", "127.0.0.1", "--port", str(port),
        env={
            "KILLKRILL_AUTH__KEYS_FILE": str(keys),
            "KILLKRILL_AUTH__RELOAD_INTERVAL": "0.2" if trigger == "file-watch" else "0",
        },
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api/v1/logs"

    def post(key: str) -> int:
        return httpx.post(url, json=LOG, headers={"x-api-key": key}).status_code

    assert (post("old-key"), post("new-key")) == (200, 401)
    pid = proc.proc.pid
    _keys_file(keys, "new-key")
    if trigger == "sighup":
        proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: post("new-key") == 200, 20, "the new key to be accepted")
    assert post("old-key") == 401
    assert proc.proc.poll() is None and proc.proc.pid == pid, "no restart"
    _keys_file(keys, "new-key", "broken: [")  # a file that does not read keeps the keys
    if trigger == "sighup":
        proc.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "API keys not reloaded" in proc.output(), 20, "the reload error")
    assert post("new-key") == 200
    assert proc.stop() == 0
