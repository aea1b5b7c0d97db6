"""The event loop of the long-running processes (receivers, workers): uvloop.

uvloop's loop, transports and timers are written in C, where asyncio's default loop runs
Python for every callback and read: the syslog receiver and the workers wake the loop for
every socket read and every Redis and Elasticsearch answer.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to its end on a new uvloop event loop (as ``asyncio.run`` does)."""
    return uvloop.run(main)
