"""API keys over HTTP: missing, wrong, right, and right-but-not-for-this-endpoint."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis

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
