"""One append is atomic: more than CHUNK payloads are refused before Redis is asked."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from killkrill.config import HttpReceiverSettings
from killkrill.streams.append import CHUNK, append_records


async def test_more_than_one_atomic_append_is_refused() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # never reached
    with pytest.raises(ValueError, match=f"at most {CHUNK}"):
        await append_records(client, "s", [b"{}"] * (CHUNK + 1))
    await client.aclose()


def test_the_http_batch_limit_is_the_atomic_append() -> None:
    assert HttpReceiverSettings().max_batch_records == CHUNK
