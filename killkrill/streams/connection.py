"""Redis connections from a URL or from the seed's host/port/db triple.

The URL is a :class:`~pydantic.SecretStr` (it may hold a password): these functions are
the only place its value is read, to open the client.
"""

from __future__ import annotations

from urllib.parse import quote

import redis
import redis.asyncio as aioredis
from pydantic import SecretStr

__all__ = ["async_client", "redis_url", "sync_client"]


def redis_url(
    host_or_url: str,
    port: int | None = None,
    db: int | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
) -> SecretStr:
    """Return a ``redis://`` URL from a full URL or from a bare host plus port and db (and
    the ACL ``username``/``password`` to log in with, if any).

    The seed's worker config passes ``redis_url`` as a host name with ``redis_port`` and
    ``redis_db`` beside it; a full ``redis://``/``rediss://``/``unix://`` URL is used as is.
    """
    if "://" in host_or_url:
        return SecretStr(host_or_url)
    host = f"[{host_or_url}]" if ":" in host_or_url else host_or_url
    auth = ""
    if username or password:
        auth = f"{quote(username or '', safe='')}:{quote(password or '', safe='')}@"
    return SecretStr(f"redis://{auth}{host}:{port or 6379}/{db or 0}")


def _url(url: str | SecretStr) -> str:
    return url.get_secret_value() if isinstance(url, SecretStr) else url


def async_client(url: str | SecretStr, *, socket_timeout: float | None = 10.0) -> aioredis.Redis:
    """An asyncio Redis client returning ``bytes`` (payloads are kept byte for byte)."""
    return aioredis.Redis.from_url(
        _url(url), socket_timeout=socket_timeout, socket_connect_timeout=5, health_check_interval=30
    )


def sync_client(url: str | SecretStr, *, socket_timeout: float | None = 10.0) -> redis.Redis:
    """A blocking Redis client returning ``bytes``, for the CLI and tests."""
    return redis.Redis.from_url(_url(url), socket_timeout=socket_timeout, socket_connect_timeout=5)
