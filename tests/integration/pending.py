"""Aging pending entries in Redis, instead of waiting for them to become idle.

A consumer that died hours ago left its entries pending and idle for hours. ``XCLAIM ...
IDLE <ms> JUSTID`` to the same consumer sets exactly that state on a real Redis (the owner
and the delivery count unchanged), so a test of the reclaim need not sleep through
``claim_idle_ms`` - which must exceed the longest a live batch may take, minutes by default.
``tests/integration/conftest.py`` puts this folder on ``sys.path``.
"""

from __future__ import annotations

from typing import Any

import redis

__all__ = ["QUICK_RECLAIM_ENV", "QUICK_RECLAIM_MS", "age_pending", "crashed_deliveries"]


def age_pending(client: redis.Redis, stream: str, group: str, seconds: float = 3600) -> int:
    """Make every pending entry of ``group`` on ``stream`` idle for ``seconds``; return how
    many there were."""
    rows: Any = client.xpending_range(stream, group, "-", "+", 100_000)
    for row in rows:
        client.xclaim(
            stream,
            group,
            row["consumer"],
            0,
            [row["message_id"]],
            idle=int(seconds * 1000),
            justid=True,
        )
    return len(rows)


def crashed_deliveries(client: redis.Redis, stream: str, group: str, times: int) -> None:
    """Leave every pending entry of ``group`` on ``stream`` as ``times`` deliveries to workers
    that crashed holding it would: delivered ``times`` times and idle for an hour (``XCLAIM
    ... RETRYCOUNT``, the state Redis itself keeps after such crashes)."""
    rows: Any = client.xpending_range(stream, group, "-", "+", 100_000)
    for row in rows:
        client.xclaim(
            stream,
            group,
            row["consumer"],
            0,
            [row["message_id"]],
            idle=3_600_000,
            retrycount=times,
            justid=True,
        )


QUICK_RECLAIM_ENV = {
    "KILLKRILL_RETRY__MAX_RETRIES": "0",
    "KILLKRILL_ELASTICSEARCH__REQUEST_TIMEOUT": "2",
    "KILLKRILL_AGGREGATION__STATEMENT_TIMEOUT": "2",
    "KILLKRILL_REDIS__SOCKET_TIMEOUT": "1",
    "KILLKRILL_CONSUMER__BLOCK_MS": "200",
}
"""Environment of a worker process whose live batches are short: one attempt of at most
2 x 2 s plus a Redis command of 1 s, twice (a batch read ahead) = 10 s, which
``claim_idle_ms`` must exceed (checked at load): see :data:`QUICK_RECLAIM_MS`."""

QUICK_RECLAIM_MS = "10100"
"""``--claim-idle-ms`` for a worker started with :data:`QUICK_RECLAIM_ENV`."""
