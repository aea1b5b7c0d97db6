"""Seed-compatible alias of :mod:`killkrill.workers.logs` (no logic here)."""

from killkrill.errors import LogParseError
from killkrill.workers.logs import LogWorker

__all__ = ["LogParseError", "LogWorker"]
