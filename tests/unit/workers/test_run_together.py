"""``run_together``: one failing task cancels the others, and none is left running."""

from __future__ import annotations

import asyncio

import pytest

from killkrill.workers.base import run_together


async def test_a_failure_cancels_the_others_and_is_raised() -> None:
    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("boom")

    sleeper = asyncio.create_task(asyncio.sleep(60))
    failing = asyncio.create_task(fail())
    with pytest.raises(RuntimeError, match="boom"):
        await run_together([sleeper, failing])
    assert sleeper.cancelled()


async def test_tasks_that_end_are_simply_awaited() -> None:
    done: list[int] = []

    async def work(n: int) -> None:
        await asyncio.sleep(0)
        done.append(n)

    await run_together([asyncio.create_task(work(n)) for n in range(3)])
    assert sorted(done) == [0, 1, 2]


async def test_cancelling_the_call_cancels_every_task() -> None:
    inner = [asyncio.create_task(asyncio.sleep(60)) for _ in range(2)]
    outer = asyncio.create_task(run_together(inner))
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert all(task.done() for task in inner)
