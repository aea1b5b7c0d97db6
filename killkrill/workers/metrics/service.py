"""``killkrill worker metrics``: the metrics worker as a long-running process.

SIGTERM or SIGINT stops reading; the batches in flight are written, committed and acked, the
ops port closes, and :func:`serve` returns 0 (the exit code). A database whose schema is not
at the newest Alembic revision is refused at start with the command that fixes it.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from pydantic import SecretStr

from killkrill.config.workers import MetricsWorkerSettings
from killkrill.db.migrate import current, head
from killkrill.errors import ConfigError
from killkrill.stackdump import install_stack_dump
from killkrill.workers.gctune import tune_for_streaming
from killkrill.workers.metrics.worker import MetricsWorker
from killkrill.workers.shutdown import finish_within

__all__ = ["check_schema", "serve"]

log = logging.getLogger("killkrill.workers.metrics")


def check_schema(database_url: str | SecretStr) -> None:
    """Raise :class:`ConfigError` unless the database is migrated to the newest revision."""
    have, want = current(database_url), head()
    if have != want:
        raise ConfigError(
            f"database schema is at revision {have or 'none'}, the worker needs {want}; "
            "run `killkrill db upgrade` first"
        )


async def serve(settings: MetricsWorkerSettings) -> int:
    """Run the worker until SIGTERM/SIGINT; return the process exit code (0)."""
    await asyncio.to_thread(check_schema, settings.database.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    install_stack_dump(loop)
    worker = MetricsWorker(settings)
    tune_for_streaming()  # start-up objects out of the collector's way (see gctune)
    try:
        await finish_within(
            worker.run(stop), stop, settings.consumer.stop_timeout, what="the metrics worker"
        )
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        worker.close()
    log.info("exiting", extra={"code": 0})
    return 0
