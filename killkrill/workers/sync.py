"""A blocking facade over async code: one private event loop on a daemon thread.

The seed's API is synchronous (``LogWorker(config).process_batch(...)``,
``MetricsWorker(config).aggregate_batch()``) while the workers are async. :class:`LoopThread`
runs their coroutines on a loop of its own, in a thread of its own, so a blocking call

* works from plain sync code and from inside a running event loop (an async test calling
  the sync API): the caller's loop is never re-entered, nor a second loop started on it;
* is safe from several threads at once: the coroutines run concurrently on the one loop,
  so clients bound to that loop (redis, aiohttp) are shared, never used across loops;
* is cancelled on the private loop when the caller is interrupted (``KeyboardInterrupt``);
* keeps the loop (and its connections) between calls, until :meth:`LoopThread.close`.

Calling it from a coroutine that itself runs on the private loop would wait for itself
forever: that raises :class:`RuntimeError` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """A private event loop, started on first use, stopped by :meth:`close`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def run(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run ``factory()`` on the private loop and return its result (or raise its error).

        ``factory`` is called on the private loop, so the coroutine is created there.
        """
        loop = self._started()
        if self._thread is threading.current_thread():
            raise RuntimeError(
                f"{self.name}: the blocking API was called from its own event loop; "
                "await the async API instead"
            )

        async def call() -> T:
            return await factory()

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # interrupted (or failed): nothing keeps running on our behalf
            raise

    def close(
        self,
        cleanup: Callable[[], Coroutine[Any, Any, object]] | None = None,
        *,
        timeout: float = 10.0,
    ) -> None:
        """Run ``cleanup()`` on the loop (if it ever started), cancel what still runs there,
        stop the loop and join its thread. Idempotent; later :meth:`run` calls raise.

        Each step waits at most ``timeout`` seconds: a cleanup that hangs (a server that does
        not answer) does not hang the caller; the daemon thread is then left to the exit."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if cleanup is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(cleanup(), loop).result(timeout)
        with contextlib.suppress(TimeoutError):
            asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self.name} is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop


async def _cancel_others() -> None:
    """Cancel every other task of the running loop, wait for them, close async generators."""
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
