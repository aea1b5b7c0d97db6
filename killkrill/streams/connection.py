"""Redis connections from a URL or from the seed's host/port/db triple."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

__all__ = ["async_client", "redis_url", "sync_client"]


def redis_url(host_or_url: str, port: int | None = None, db: int | None = None) -> str:
    """Return a ``redis://`` URL from a full URL or from a bare host plus port and db.

    The seed's worker config passes ``redis_url`` as a host name with ``redis_port`` and
    ``redis_db`` beside it; a full ``redis://``/``rediss://``/``unix://`` URL is used as is.
    """
    if "://" in host_or_url:
        return host_or_url
    host = f"[{host_or_url}]" if ":" in host_or_url else host_or_url
    return f"redis://{host}:{port or 6379}/{db or 0}"


def async_client(url: str, *, socket_timeout: float | None = 10.0) -> aioredis.Redis:
    """An asyncio Redis client returning ``bytes`` (payloads are kept byte for byte)."""
    return aioredis.Redis.from_url(
        url, socket_timeout=socket_timeout, socket_connect_timeout=5, health_check_interval=30
    )


def sync_client(url: str, *, socket_timeout: float | None = 10.0) -> redis.Redis:
    """A blocking Redis client returning ``bytes``, for the CLI and tests."""
    return redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=5)
