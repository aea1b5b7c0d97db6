"""finish_within: a stopping worker ends in bounded time and says what held it up."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from killkrill.workers.shutdown import finish_within


async def test_work_that_ends_by_itself_is_awaited() -> None:
    done = []

    async def work() -> None:
        await asyncio.sleep(0.01)
        done.append(True)

    assert await finish_within(work(), asyncio.Event(), 1.0, what="w") is True
    assert done == [True]


async def test_after_stop_the_work_gets_its_grace_to_finish() -> None:
    stop = asyncio.Event()

    async def work() -> None:
        await stop.wait()
        await asyncio.sleep(0.05)  # finishing the batch in flight

    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert await finish_within(work(), stop, 5.0, what="w") is True


async def test_work_still_running_at_the_deadline_is_cancelled_and_its_stacks_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    cancelled = []

    async def wedged_write() -> None:
        try:
            await asyncio.Event().wait()  # a write that never answers
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    stop.set()
    with caplog.at_level(logging.ERROR, logger="killkrill.workers"):
        assert await finish_within(wedged_write(), stop, 0.05, what="the log worker") is False
    assert cancelled == [True]
    [record] = caplog.records
    assert "the log worker did not stop within 0.05 s" in record.getMessage()
    assert "wedged_write" in record.tasks  # type: ignore[attr-defined]


async def test_an_error_of_the_work_is_raised() -> None:
    async def work() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await finish_within(work(), asyncio.Event(), 1.0, what="w")


async def test_a_periodic_loop_ends_on_stop() -> None:
    from killkrill.workers.base import every

    stop, calls = asyncio.Event(), []

    async def work() -> None:
        calls.append(1)
        if len(calls) == 3:
            stop.set()

    await asyncio.wait_for(every(0.001, stop, work), 2)
    assert len(calls) == 3


async def test_a_periodic_loop_ends_even_when_its_work_swallows_the_cancellation() -> None:
    """Seen in a log worker that never exited: the gauges' refresh swallowed the cancel
    (a timeout library converting it), the loop slept again, and the stop waited for
    ever on it."""
    from killkrill.workers.base import every

    entered = asyncio.Event()

    async def swallowing_work() -> None:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):  # what the library did
            await asyncio.sleep(10)

    task = asyncio.create_task(every(60, asyncio.Event(), swallowing_work))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 2)
