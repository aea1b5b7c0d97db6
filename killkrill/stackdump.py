"""Where is a process stuck? ``SIGUSR1`` prints every asyncio task's stack, ``SIGUSR2`` every
thread's.

Every long-running process (receivers, workers, the operator) installs this at start, so
``kill -USR1 <pid>`` answers "what is it waiting for" without a debugger: each task of the
event loop with the line it awaits at, and the thread stacks. A loop blocked in a call
cannot run that handler; ``kill -USR2`` still dumps the thread stacks (:mod:`faulthandler`,
from the signal itself). Both go to stderr, apart from the JSON log lines on stdout.
"""

from __future__ import annotations

import asyncio
import faulthandler
import io
import signal
import sys

__all__ = ["DUMP_SIGNAL", "THREAD_DUMP_SIGNAL", "dump_tasks", "install_stack_dump"]

DUMP_SIGNAL = signal.SIGUSR1
THREAD_DUMP_SIGNAL = signal.SIGUSR2


def dump_tasks(loop: asyncio.AbstractEventLoop) -> str:
    """Every pending task of ``loop`` with its stack, as text."""
    out = io.StringIO()
    tasks = asyncio.all_tasks(loop)
    out.write(f"--- {len(tasks)} asyncio tasks ---\n")
    for task in tasks:
        out.write(f"{task!r}\n")
        task.print_stack(limit=20, file=out)
    return out.getvalue()


def install_stack_dump(loop: asyncio.AbstractEventLoop) -> None:
    """Make :data:`DUMP_SIGNAL` write the thread stacks and ``loop``'s tasks to stderr, and
    :data:`THREAD_DUMP_SIGNAL` the thread stacks even while the loop is blocked."""
    faulthandler.register(THREAD_DUMP_SIGNAL, file=sys.stderr, all_threads=True)

    def dump() -> None:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.write(dump_tasks(loop))
        sys.stderr.flush()

    loop.add_signal_handler(DUMP_SIGNAL, dump)
