"""A stopping worker ends in bounded time, and says what held it up if it could not.

On SIGTERM a worker finishes its batches in flight (their entries acked or left pending).
That normally takes well under a second; it must never take longer than the pod's grace
period, or the kubelet kills the process mid-write. :func:`finish_within` gives the work
``consumer.stop_timeout`` seconds after the stop request; past that, every task's stack is
logged (what it was waiting for) and the work is cancelled: what was in flight stays
pending in Redis, never acked, and another worker reclaims it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from killkrill.stackdump import dump_tasks

__all__ = ["finish_within"]

log = logging.getLogger("killkrill.workers")


async def finish_within(
    work: Coroutine[Any, Any, None], stop: asyncio.Event, grace: float, *, what: str
) -> bool:
    """Run ``work`` to its end; once ``stop`` is set, for at most ``grace`` seconds more.

    Returns True when it ended by itself; False when it was cancelled at the deadline
    (after logging every task's stack). An error of ``work`` is raised."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                log.error(
                    f"{what} did not stop within {grace:g} s of the stop request; cancelling "
                    "it (its entries in flight stay pending and are reclaimed)",
                    extra={
                        "stop_timeout": grace,
                        "tasks": dump_tasks(asyncio.get_running_loop()),
                    },
                )
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return False
        task.result()
        return True
    finally:
        stopped.cancel()
        if not task.done():  # cancelled from outside
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
