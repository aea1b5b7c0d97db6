"""The blocking facade of the seed's sync API: one private loop, any caller (pure asyncio)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from killkrill.workers.sync import LoopThread


async def _loop_id() -> int:
    await asyncio.sleep(0)
    return id(asyncio.get_running_loop())


def test_runs_on_one_private_loop_kept_between_calls() -> None:
    facade = LoopThread("test-loop")
    try:
        first, second = facade.run(_loop_id), facade.run(_loop_id)
        assert first == second
        with pytest.raises(ValueError, match="boom"):
            facade.run(_raise)
        assert facade.run(_loop_id) == first  # an error does not break the loop
    finally:
        facade.close()


async def _raise() -> None:
    raise ValueError("boom")


def test_concurrent_callers_from_many_threads_share_the_loop() -> None:
    facade = LoopThread("test-loop")
    barrier = asyncio.Event()
    arrived: list[int] = []

    async def meet(n: int) -> int:
        arrived.append(n)
        if len(arrived) == 8:
            barrier.set()
        await asyncio.wait_for(barrier.wait(), 10)  # all 8 run at once on the one loop
        return n * 2

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda n: facade.run(lambda: meet(n)), range(8)))
        assert results == [n * 2 for n in range(8)]
    finally:
        facade.close()


async def test_works_from_inside_a_running_loop() -> None:
    facade = LoopThread("test-loop")
    try:
        theirs = facade.run(_loop_id)
        assert theirs != id(asyncio.get_running_loop())
    finally:
        facade.close()


def test_calling_it_from_its_own_loop_raises_instead_of_hanging() -> None:
    facade = LoopThread("test-loop")

    async def reenter() -> int:
        return facade.run(_loop_id)

    try:
        with pytest.raises(RuntimeError, match="its own event loop"):
            facade.run(reenter)
    finally:
        facade.close()


def test_close_runs_cleanup_cancels_the_rest_and_refuses_later_calls() -> None:
    facade = LoopThread("test-loop")
    cleaned: list[bool] = []
    started = threading.Event()
    outcome: list[BaseException] = []

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    def caller() -> None:
        try:
            facade.run(forever)
        except BaseException as exc:
            outcome.append(exc)

    async def cleanup() -> None:
        cleaned.append(True)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(10)
    facade.close(cleanup)
    thread.join(10)
    assert cleaned == [True]
    assert [type(e).__name__ for e in outcome] == ["CancelledError"]
    assert facade.closed
    with pytest.raises(RuntimeError, match="closed"):
        facade.run(_loop_id)
    facade.close()  # idempotent


def test_close_before_any_call_is_a_no_op() -> None:
    facade = LoopThread("test-loop")
    facade.close()
    assert facade.closed
