"""Fault-injection points for crash tests of exactly-once delivery.

``KILLKRILL_FAULT=<point>[:<n>]`` makes the process SIGKILL itself the ``n``-th time (default
the first) it passes ``<point>``. Unset (the normal case) it costs one dict lookup. Points:

* ``metrics.after_commit`` - the aggregates are committed, the entries not yet acked.
"""

from __future__ import annotations

import os
import signal

__all__ = ["fault_point"]

_passes: dict[str, int] = {}


def fault_point(point: str) -> None:
    """Kill this process with SIGKILL if ``KILLKRILL_FAULT`` names ``point`` (see module)."""
    spec = os.environ.get("KILLKRILL_FAULT")
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
