"""Seed-compatible alias: ``from log_worker.worker import LogWorker, LogParseError``."""

from killkrill.errors import LogParseError
from killkrill.workers.logs import LogWorker

__all__ = ["LogParseError", "LogWorker"]
