"""Waiting for something a separate process does, without sleeps of a guessed length.

``tests/integration/conftest.py`` puts this folder on ``sys.path``, so any integration test
(their folders have dashes: no packages) imports it as ``from polling import wait_for``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(
    check: Callable[[], T], timeout: float = 60, what: str = "the condition", interval: float = 0.05
) -> T:
    """Call ``check()`` every ``interval`` seconds until it returns something truthy, and
    return that; after ``timeout`` seconds fail the test naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last = check()
    while not last:
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)
        last = check()
    return last
