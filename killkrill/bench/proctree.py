"""CPU time and memory of process trees, read from ``/proc`` (Linux).

CPU is ``utime + stime`` of ``/proc/<pid>/stat`` (every thread of the process), RSS the
resident pages of ``/proc/<pid>/statm``. A :class:`TreeMeter` follows the roots it is given
and all their descendants, sampling every ``interval`` seconds in a thread: the CPU seconds
each process spent inside the window (a process that ends keeps the last value seen) and the
peak of the summed RSS.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ProcSample", "TreeMeter", "TreeUsage", "descendants", "read_proc"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    """One process at one instant."""

    pid: int
    name: str
    cpu_s: float
    rss_bytes: int


def read_proc(pid: int) -> ProcSample | None:
    """The process's name, CPU seconds and RSS now (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except OSError:
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields after the name, counted from 3 (state): utime is 14, stime 15.
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    rss = int(statm.split()[1]) * _PAGE
    return ProcSample(pid, name, cpu, rss)


def _parents() -> dict[int, int]:
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        found[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    return found


def descendants(roots: Mapping[int, str]) -> dict[int, str]:
    """``roots`` and every process below them that is alive now, each with the label of
    its root."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    tree: dict[int, str] = {}
    todo = [(pid, label) for pid, label in roots.items() if pid in parents]
    while todo:
        pid, label = todo.pop()
        if pid not in tree:
            tree[pid] = label
            todo.extend((child, label) for child in children.get(pid, ()))
    return tree


@dataclass
class TreeUsage:
    """What a :class:`TreeMeter` saw between start and stop."""

    seconds: float
    cpu_s: float
    """CPU seconds of every process of the trees inside the window."""
    peak_rss_bytes: int
    """Highest sum of the trees' RSS seen at one sample."""
    by_role: dict[str, float] = field(default_factory=dict)
    """CPU seconds per role: the label of each root (``receiver``, ``worker``, ``redis``)."""

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / 1_048_576


class TreeMeter:
    """Meter process trees from :meth:`start` to :meth:`stop` (see the module doc).

    ``roots`` (pid -> role) is called at each sample, so a contender that starts processes
    later (or restarts one) is followed.
    """

    def __init__(self, roots: Callable[[], Mapping[int, str]], interval: float = 0.2) -> None:
        self._roots = roots
        self.interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, ProcSample] = {}
        self._role: dict[int, str] = {}
        self._peak = 0
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._final = TreeUsage(0.0, 0.0, 0)

    def _sample(self, *, baseline: bool = False) -> None:
        total = 0
        with self._lock:
            for pid, role in descendants(self._roots()).items():
                sample = read_proc(pid)
                if sample is None:
                    continue
                self._role[pid] = role
                total += sample.rss_bytes
                # A process first seen after the start spent all its CPU inside the window.
                self._first.setdefault(pid, sample.cpu_s if baseline else 0.0)
                self._last[pid] = sample
            self._peak = max(self._peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> TreeMeter:
        self._sample(baseline=True)
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="tree-meter", daemon=True)
        self._thread.start()
        return self

    def peek(self) -> TreeUsage:
        """The usage so far (the meter keeps running)."""
        self._sample()
        return self._usage()

    def stop(self) -> TreeUsage:
        """Stop sampling (once; later calls return the same usage)."""
        if not self._stop.is_set():
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self._sample()
            self._final = self._usage()
        return self._final

    def _usage(self) -> TreeUsage:
        with self._lock:
            by_role: dict[str, float] = {}
            for pid, last in self._last.items():
                spent = max(0.0, last.cpu_s - self._first.get(pid, 0.0))
                role = self._role[pid]
                by_role[role] = by_role.get(role, 0.0) + spent
            return TreeUsage(
                seconds=time.monotonic() - self._started,
                cpu_s=sum(by_role.values()),
                peak_rss_bytes=self._peak,
                by_role=by_role,
            )
