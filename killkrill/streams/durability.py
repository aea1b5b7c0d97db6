"""Does this Redis keep what the pipeline acknowledges? Checked once at every process start.

The pipeline's guarantees rest on two Redis settings: ``maxmemory-policy noeviction`` (a
full Redis refuses writes, and the receivers push back, instead of evicting stream entries
already acknowledged to clients) and the AOF (``appendonly yes``, so a restart does not
lose the buffer). :func:`check_redis_durability` reads them with ``CONFIG GET`` (and the
version with ``INFO server``) and, by :func:`assess`:

* an eviction policy other than ``noeviction`` is a startup error naming the fix, or a
  warning with ``redis.durability_check: warn``;
* a ``CONFIG GET`` the server refuses (managed Redis often forbids it) is an error naming
  that setting, or with it a warning;
* AOF off is a warning; ``appendfsync no`` too (the OS decides when the AOF reaches disk);
* a receiver with ``durability: fsync`` needs WAITAOF: Redis >= 7.2 and the AOF on, or it
  does not start.

Every long-running process calls :func:`wait_for_redis_durability` at start (receivers,
log worker, metrics worker): one place, one wording. A process started before its Redis
answers (in a cluster, pods start in any order) waits for it with backoff, saying so, until
it answers or the process is asked to stop; it does not exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from killkrill.config.backoff import Backoff
from killkrill.config.common import RedisSettings
from killkrill.config.secrets import redact_url
from killkrill.errors import ConfigError, ServiceUnavailable
from killkrill.streams.connection import async_client

__all__ = [
    "WAITAOF_VERSION",
    "RedisDurability",
    "assess",
    "check_redis_durability",
    "wait_for_redis_durability",
]

log = logging.getLogger("killkrill.streams.durability")

WAITAOF_VERSION = (7, 2, 0)
"""The first Redis with WAITAOF (``durability: fsync``)."""

_SETTING = "redis.durability_check: warn (env KILLKRILL_REDIS__DURABILITY_CHECK=warn)"


@dataclass(frozen=True)
class RedisDurability:
    """What a Redis says about keeping data (None: it would not say)."""

    version: tuple[int, int, int] | None
    maxmemory_policy: str | None
    appendonly: bool | None
    appendfsync: str | None
    config_refused: str | None = None
    """The server's answer when it refused CONFIG GET."""

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version)) if self.version else "unknown"


def _version(text: str) -> tuple[int, int, int] | None:
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def assess(
    facts: RedisDurability, *, strict: bool, fsync: bool = False
) -> tuple[list[str], list[str]]:
    """The startup errors and warnings for ``facts`` (pure; see the module doc)."""
    errors: list[str] = []
    warnings: list[str] = []
    lenient = warnings if not strict else errors
    if facts.config_refused is not None:
        lenient.append(
            f"Redis refused CONFIG GET ({facts.config_refused}), so KillKrill cannot check "
            "that it keeps acknowledged entries (maxmemory-policy noeviction, appendonly "
            "yes). If this is a managed Redis that forbids CONFIG, check both in its "
            f"console and set {_SETTING}"
        )
    elif facts.maxmemory_policy != "noeviction":
        lenient.append(
            f"Redis maxmemory-policy is {facts.maxmemory_policy}: when memory runs out it "
            "evicts keys, stream entries already acknowledged to clients included, instead "
            "of refusing writes (which the receivers answer with backpressure). Fix: "
            "`CONFIG SET maxmemory-policy noeviction` and put it in redis.conf (or the "
            "managed Redis's parameters); to run anyway, knowing that, set " + _SETTING
        )
    if facts.appendonly is False:
        warnings.append(
            "Redis has its AOF off (appendonly no): a Redis restart loses every entry not yet "
            "written to Elasticsearch/PostgreSQL, although receivers acknowledged them. Fix: "
            "`CONFIG SET appendonly yes` and put it in redis.conf"
        )
    elif facts.appendfsync == "no":
        warnings.append(
            "Redis appendfsync is `no`: the OS decides when the AOF reaches disk, so a host "
            "failure can lose many seconds of acknowledged entries. Use `everysec` (at most "
            "about a second) or `always`"
        )
    if fsync:
        if facts.version is None or facts.version < WAITAOF_VERSION:
            errors.append(
                "durability: fsync waits for the AOF fsync with WAITAOF, which needs Redis "
                f">= 7.2; this Redis is {facts.version_text}. Upgrade Redis, or set "
                "durability: memory"
            )
        elif facts.appendonly is False:
            errors.append(
                "durability: fsync needs the AOF on (WAITAOF waits for its fsync), but Redis "
                "has appendonly no. Fix: `CONFIG SET appendonly yes` (and in redis.conf), or "
                "set durability: memory"
            )
    return errors, warnings


async def _read(client: aioredis.Redis) -> RedisDurability:
    info: Any = await client.info("server")
    version = _version(str(info.get("redis_version", "")))
    try:
        config: Any = await client.config_get("maxmemory-policy", "appendonly", "appendfsync")
    except ResponseError as exc:  # unknown command, NOPERM...
        return RedisDurability(version, None, None, None, config_refused=str(exc))
    values = {_text(k): _text(v) for k, v in config.items()}
    appendonly = values.get("appendonly")
    return RedisDurability(
        version,
        values.get("maxmemory-policy"),
        None if appendonly is None else appendonly == "yes",
        values.get("appendfsync"),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def check_redis_durability(
    settings: RedisSettings,
    *,
    component: str,
    fsync: bool = False,
    client: aioredis.Redis | None = None,
) -> RedisDurability:
    """Read the Redis durability settings; log the warnings, raise :class:`ConfigError`
    with every error (see the module doc). ``client`` defaults to a short-lived one of
    ``settings.url``. Raises :class:`ServiceUnavailable` when Redis cannot be reached."""
    own = client is None
    redis = client or async_client(settings.url, socket_timeout=settings.socket_timeout)
    try:
        facts = await _read(redis)
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise ServiceUnavailable(
            f"Redis unreachable at start ({redact_url(settings.url)}): cannot check its "
            f"durability settings: {exc}"
        ) from exc
    except RedisError as exc:
        raise ServiceUnavailable(
            f"Redis ({redact_url(settings.url)}) refused INFO at start: {exc}"
        ) from exc
    finally:
        if own:
            await redis.aclose()
    errors, warnings = assess(facts, strict=settings.durability_check == "strict", fsync=fsync)
    context = {
        "component": component,
        "redis_version": facts.version_text,
        "maxmemory_policy": facts.maxmemory_policy,
        "appendonly": facts.appendonly,
        "appendfsync": facts.appendfsync,
    }
    for warning in warnings:
        log.warning(warning, extra=context)
    if errors:
        raise ConfigError("Redis would not keep acknowledged entries:\n  " + "\n  ".join(errors))
    return facts


async def wait_for_redis_durability(
    settings: RedisSettings,
    *,
    component: str,
    stop: asyncio.Event,
    fsync: bool = False,
    client: aioredis.Redis | None = None,
    backoff: Backoff | None = None,
) -> RedisDurability | None:
    """:func:`check_redis_durability`, retried with ``backoff`` (default 0.2 s doubling to
    10 s) for as long as Redis is unreachable; None once ``stop`` is set first. Each wait
    is logged as a warning naming the error. A :class:`ConfigError` (Redis answers, but
    would lose data) is raised at once: waiting would not change it."""
    delays = backoff or Backoff()
    attempt = 0
    while not stop.is_set():
        try:
            return await check_redis_durability(
                settings, component=component, fsync=fsync, client=client
            )
        except ServiceUnavailable as exc:
            attempt += 1
            delay = delays.delay(attempt)
            log.warning(
                "Redis unreachable at start; waiting for it",
                extra={"component": component, "error": str(exc), "retry_in_s": round(delay, 2)},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    return None
