"""The read -> parse -> write -> ack loop both workers share, and its retry/dead-letter policy.

For each batch read from a consumer group:

1. entries delivered more than ``max_deliveries`` times, and entries the parser rejects,
   go to the dead-letter stream (atomically with their ack);
2. the rest go to the sink, which answers per entry: :class:`Delivered`, :class:`Retry` or
   :class:`Reject`. A sink that raises :class:`~killkrill.errors.RetryableError` means
   "retry all of them"; one that raises :class:`~killkrill.errors.PermanentError` (e.g.
   :class:`~killkrill.errors.RejectedBatch`) means "something in this batch can never be
   written": the batch is split in halves, each written on its own, down to the single
   entries at fault, which are rejected with the sink's reason - the others are written;
3. delivered entries are acked at once; rejected ones are dead-lettered; retryable ones are
   written again after a :class:`~killkrill.workers.retry.Backoff` delay, up to
   ``max_retries`` times (a stop request ends the wait at once), and then *left pending*
   (never acked) with this delivery handed back
   (:meth:`~killkrill.streams.consumer.ConsumerGroup.give_back`): a transient failure of
   the sink does not count towards ``max_deliveries``. They come back later through
   XAUTOCLAIM. A delivery that ends any other way - the worker crashed on the entry - does
   count, so a poison entry still reaches the dead-letter stream.

Nothing is ever acked because the batch "was tried": only what the sink accepted.

:meth:`StreamWorker.run` is the one lane driver, for both ways the workers run: a bounded
drain (the seed's ``process_batch(count=...)``, ``process_stream_async``) and the
long-running mode (until a stop event; outages waited out with backoff instead of burning
delivery counts). Either way several lanes of batches share the work, each reading and
parsing its next batch while the current one is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from killkrill.errors import PermanentError, RetryableError, ValidationError
from killkrill.streams.consumer import ConsumerGroup, Entry
from killkrill.streams.heartbeat import WorkerActivity
from killkrill.workers.retry import Backoff

__all__ = [
    "DELIVERED",
    "BatchParser",
    "BatchResult",
    "Delivered",
    "Item",
    "Outcome",
    "PreparedBatch",
    "Reject",
    "Retry",
    "Sink",
    "StreamWorker",
    "every",
    "parse_each",
    "run_lanes",
    "run_together",
    "sleep_or_stop",
    "sort_outcomes",
]

log = logging.getLogger("killkrill.workers")

R = TypeVar("R")


@dataclass(frozen=True)
class Delivered:
    """The sink has the entry durably: ack it."""


@dataclass(frozen=True)
class Retry:
    """The entry may succeed later (429, 5xx, timeout, connection lost)."""

    reason: str


@dataclass(frozen=True)
class Reject:
    """The entry can never succeed (e.g. a mapping error): dead-letter it with ``reason``."""

    reason: str


Outcome = Delivered | Retry | Reject
DELIVERED = Delivered()


@dataclass(slots=True)
class Item(Generic[R]):
    """A parsed record with the stream entry it came from. Read-only by convention (not
    frozen: one is built per entry, on the hot path)."""

    entry: Entry
    record: R


class Sink(Protocol[R]):
    """Where records go. ``write`` answers for every item, keyed by stream entry ID; an ID
    missing from the answer counts as ``Retry``."""

    async def write(self, items: Sequence[Item[R]]) -> Mapping[str, Outcome]: ...


_RESULT_KEYS = ("read", "success", "failed", "dead_lettered", "pending", "retries", "attempts")


@dataclass
class BatchResult(Mapping[str, int]):
    """What one call did. Dict-like (``result['success']``) as the seed uses it.

    ``failed`` = ``dead_lettered`` + ``pending`` (left unacknowledged for a later retry).
    """

    read: int = 0
    success: int = 0
    dead_lettered: int = 0
    pending: int = 0
    retries: int = 0
    """Write attempts beyond the first."""
    attempts: int = 0
    """Write calls made to the sink."""
    errors: list[str] = field(default_factory=list)
    """Reasons for entries that were not delivered, one per entry, for logs and tests."""
    seconds: float = field(default=0.0, compare=False)
    """Time spent reading, parsing, writing and acknowledging (not a mapping key)."""

    @property
    def failed(self) -> int:
        return self.dead_lettered + self.pending

    def __getitem__(self, key: str) -> int:
        if key not in _RESULT_KEYS:
            raise KeyError(key)
        value: int = getattr(self, key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(_RESULT_KEYS)

    def __len__(self) -> int:
        return len(_RESULT_KEYS)

    def merge(self, other: BatchResult) -> None:
        """Add ``other``'s counts into this result."""
        self.read += other.read
        self.success += other.success
        self.dead_lettered += other.dead_lettered
        self.pending += other.pending
        self.retries += other.retries
        self.attempts += other.attempts
        self.errors.extend(other.errors)
        self.seconds += other.seconds


@dataclass
class PreparedBatch(Generic[R]):
    """A batch read and parsed, not yet written: see :meth:`StreamWorker.prepare`."""

    items: list[Item[R]]
    """Parsed entries, pending until written and acknowledged."""
    result: BatchResult
    """Counts so far (read, dead-lettered by the parser)."""
    parse_failures: list[str]
    """Reasons of the entries the parser rejected (for ``stop_on_error``)."""


BatchParser = Callable[[Sequence[Entry]], Sequence[R | PermanentError]]
"""Parses a batch: each entry's record, or the :class:`PermanentError` that rejects it."""


def parse_each(parse: Callable[[Entry], R]) -> BatchParser[R]:
    """A :data:`BatchParser` calling ``parse`` on each entry; a :class:`PermanentError` it
    raises takes that entry's place."""

    def parse_batch(entries: Sequence[Entry]) -> list[R | PermanentError]:
        out: list[R | PermanentError] = []
        for entry in entries:
            try:
                out.append(parse(entry))
            except PermanentError as exc:
                out.append(exc)
        return out

    return parse_batch


class StreamWorker(Generic[R]):
    """Runs batches from ``group`` through ``parse`` into ``sink``.

    ``parse`` takes a whole batch of entries and returns, in order, each one's record or the
    :class:`PermanentError` saying why it can never be written (a batch in one call: one
    loop instead of a call per entry, on the hot path). :func:`parse_each` makes one from a
    function that parses one entry.
    """

    def __init__(
        self,
        group: ConsumerGroup,
        sink: Sink[R],
        parse: BatchParser[R],
        *,
        worker_name: str,
        backoff: Backoff | None = None,
        max_retries: int = 3,
        max_deliveries: int = 10,
        parse_error: type[ValidationError] = ValidationError,
    ) -> None:
        self.group = group
        self.sink = sink
        self.parse = parse
        self.worker_name = worker_name
        self.backoff = backoff or Backoff()
        self.max_retries = max_retries
        self.max_deliveries = max_deliveries
        self.parse_error = parse_error

    async def run(
        self,
        count: int | None = None,
        *,
        chunk: int,
        lanes: int = 1,
        stop: asyncio.Event | None = None,
        ready: Callable[[], Awaitable[bool]] | None = None,
        block_ms: int | None = None,
        max_retries: int | None = None,
        stop_on_error: bool = False,
        on_batch: Callable[[BatchResult], Awaitable[None]] | None = None,
        idle_sleep: float = 0.1,
        activity: WorkerActivity | None = None,
    ) -> BatchResult:
        """Drive ``lanes`` lanes of batches of up to ``chunk`` entries; return the totals.

        Each lane reads and parses its next batch while the current one is written, so the
        sink gets the next batch as soon as it answers; each entry is read by one lane only.
        A batch read ahead is pending like any other: when the run ends it is still written
        (or left pending), never dropped. ``stop`` (once set) ends every lane after its
        batches in flight, and cuts short every wait, retry backoffs included.

        Two modes:

        * **drain** (no ``ready``): until ``count`` entries are read (sharing the budget
          between lanes; None: no limit) or a read finds nothing. Errors are raised - once
          the other lanes have finished their batch - and, with ``stop_on_error``, parse
          failures raise ``parse_error`` after everything is handled.
        * **long-running** (with ``ready``, a probe of the dependencies): until ``stop``.
          When Redis or the sink is unreachable (a :class:`RetryableError`), or a batch ends
          with nothing delivered and entries left pending, the lane waits with backoff until
          ``ready()`` answers true before reading again. With ``block_ms`` falsy an empty
          read sleeps ``idle_sleep`` seconds instead of spinning. Other errors end the run
          as in the drain mode.

        ``on_batch`` is awaited with each batch's result. ``activity`` (the worker's
        heartbeat facts) learns of every delivery, dead letter and sink or Redis failure.
        """
        state = _Run(
            budget=count,
            stop=asyncio.Event(),
            long_running=ready is not None,
        )
        watcher = asyncio.create_task(_forward(stop, state.stop)) if stop is not None else None
        lane = _Lane(
            self, state, chunk, block_ms, max_retries, ready, on_batch, idle_sleep, activity
        )
        try:
            outcomes = await asyncio.gather(
                *(lane.run() for _ in range(max(1, lanes))), return_exceptions=True
            )
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if stop_on_error and state.parse_failures:
            raise self._parse_failure(state.parse_failures)
        return state.total

    async def prepare(self, count: int, *, block_ms: int | None = None) -> PreparedBatch[R]:
        """The first half of a batch: read up to ``count`` entries, parse them, dead-letter
        those that cannot be parsed (or were delivered too often). The parsed items stay
        pending until :meth:`deliver` writes them.

        A long-running worker prepares its next batch while the sink writes the current
        one (see :meth:`deliver`), so the sink never waits for the reading and parsing.
        """
        entries = await self.group.read(count, block_ms)
        started = time.perf_counter()  # a blocking wait for entries is not work
        result = BatchResult(read=len(entries))
        items, rejected = self._parse_all(entries)
        parse_failures = [
            reason for entry, reason in rejected if entry.deliveries <= self.max_deliveries
        ]
        await self._dead_letter(rejected, result, attempts=0)
        result.seconds = time.perf_counter() - started
        return PreparedBatch(items, result, parse_failures)

    async def deliver(
        self,
        batch: PreparedBatch[R],
        *,
        max_retries: int | None = None,
        stop: asyncio.Event | None = None,
    ) -> BatchResult:
        """The second half: write the prepared items, ack what the sink accepted, dead-letter
        what it rejected, retry the rest and finally leave it pending. Returns the whole
        batch's result (the read and parse counts of :meth:`prepare` included).

        Once ``stop`` is set no retry is waited for: what still needs one is left pending.
        """
        retries = self.max_retries if max_retries is None else max_retries
        started = time.perf_counter()
        await self._write_with_retries(batch.items, batch.result, retries, stop)
        batch.result.seconds += time.perf_counter() - started
        return batch.result

    def _parse_failure(self, reasons: Sequence[str]) -> ValidationError:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return self.parse_error(f"{reasons[0]}{more}; moved to {self.group.dead_letter_stream}")

    def _parse_all(self, entries: Sequence[Entry]) -> tuple[list[Item[R]], list[tuple[Entry, str]]]:
        rejected: list[tuple[Entry, str]] = []
        limit = self.max_deliveries
        if any(entry.deliveries > limit for entry in entries):
            rejected = [
                (
                    entry,
                    f"delivered {entry.deliveries} times without success (max_deliveries={limit})",
                )
                for entry in entries
                if entry.deliveries > limit
            ]
            entries = [entry for entry in entries if entry.deliveries <= limit]
        items: list[Item[R]] = []
        for entry, parsed in zip(entries, self.parse(entries), strict=True):
            if isinstance(parsed, PermanentError):
                rejected.append((entry, str(parsed)))
            else:
                items.append(Item(entry, parsed))
        return items, rejected

    async def _dead_letter(
        self, rejected: Sequence[tuple[Entry, str]], result: BatchResult, *, attempts: int
    ) -> None:
        if rejected:
            await self.group.dead_letter(rejected, attempts=attempts, worker=self.worker_name)
            result.dead_lettered += len(rejected)
            result.errors.extend(reason for _, reason in rejected)

    async def _write_with_retries(
        self,
        items: Sequence[Item[R]],
        result: BatchResult,
        max_retries: int,
        stop: asyncio.Event | None,
    ) -> None:
        attempt = 0
        while items:
            attempt += 1
            outcomes = await self._write(items, result)
            delivered, rejects, retry, last_reason = sort_outcomes(items, outcomes)
            await self.group.ack(delivered)
            result.success += len(delivered)
            await self._dead_letter(rejects, result, attempts=attempt)
            if retry and attempt <= max_retries and not _is_set(stop):
                result.retries += 1
                await sleep_or_stop(stop, self.backoff.delay(attempt))
                if not _is_set(stop):
                    items = retry
                    continue
            if retry:
                await self._leave_pending(retry, result, attempt, last_reason)
            return

    async def _write(self, items: Sequence[Item[R]], result: BatchResult) -> Mapping[str, Outcome]:
        """One write of ``items`` (counted in ``result.attempts``), its answer per entry.

        A batch refused for good as a whole is split in halves, each written on its own, so
        only the entries at fault are rejected (a single one gets the sink's reason)."""
        result.attempts += 1
        try:
            return await self.sink.write(items)
        except RetryableError as exc:
            return dict.fromkeys((item.entry.id for item in items), Retry(str(exc)))
        except PermanentError as exc:
            if len(items) == 1:
                return {items[0].entry.id: Reject(str(exc))}
            half = len(items) // 2
            first = await self._write(items[:half], result)
            return {**first, **(await self._write(items[half:], result))}

    async def _leave_pending(
        self, retry: Sequence[Item[R]], result: BatchResult, attempts: int, reason: str
    ) -> None:
        """Leave ``retry`` unacknowledged for a later delivery, this one handed back: the
        verdict was transient (the sink was slow or down), not about the entries."""
        result.pending += len(retry)
        result.errors.extend(f"left pending after {attempts} attempts: {reason}" for _ in retry)
        await self.group.give_back([item.entry.id for item in retry])


def _is_set(event: asyncio.Event | None) -> bool:
    return event is not None and event.is_set()


async def _forward(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


@dataclass
class _Run:
    """What the lanes of one :meth:`StreamWorker.run` share."""

    budget: int | None
    """Entries still to read (None: no limit)."""
    stop: asyncio.Event
    """Set by the caller's stop event, or by a lane that failed: every lane ends."""
    long_running: bool
    total: BatchResult = field(default_factory=BatchResult)
    parse_failures: list[str] = field(default_factory=list)

    def reserve(self, chunk: int) -> int:
        """Entries the next read may take (0: the budget is spent), taken from the budget."""
        if self.budget is None:
            return chunk
        n = min(chunk, self.budget)
        self.budget -= n
        return n

    def refund(self, n: int) -> None:
        if self.budget is not None:
            self.budget += n


@dataclass
class _Lane(Generic[R]):
    """One lane of batches (see :meth:`StreamWorker.run`); :meth:`run` is one lane's life."""

    worker: StreamWorker[R]
    state: _Run
    chunk: int
    block_ms: int | None
    max_retries: int | None
    ready: Callable[[], Awaitable[bool]] | None
    on_batch: Callable[[BatchResult], Awaitable[None]] | None
    idle_sleep: float
    activity: WorkerActivity | None

    async def run(self) -> None:
        state, stream = self.state, self.worker.group.stream
        outage = 0
        ahead: asyncio.Task[PreparedBatch[R] | None] | None = None
        try:
            while True:
                try:
                    if ahead is not None:
                        task, ahead = ahead, None
                        prepared = await task
                    elif state.stop.is_set():
                        return
                    else:
                        prepared = await self._prepare()
                    if prepared is None:
                        return  # the budget is spent
                    if prepared.result.read == 0 and not state.long_running:
                        return  # drained
                    if prepared.items and not state.stop.is_set():
                        ahead = asyncio.create_task(self._prepare())
                    result = await self.worker.deliver(
                        prepared, max_retries=self.max_retries, stop=state.stop
                    )
                except RetryableError as exc:
                    if self.activity is not None:
                        self.activity.failed(str(exc))
                    if not state.long_running:
                        raise
                    outage += 1
                    log.warning(
                        "dependency unavailable, waiting",
                        extra={"stream": stream, "error": str(exc)},
                    )
                    await self._wait_until_ready(outage)
                    continue
                state.total.merge(result)
                state.parse_failures.extend(prepared.parse_failures)
                if self.activity is not None:
                    _record(self.activity, result)
                if self.on_batch is not None:
                    await self.on_batch(result)
                if not state.long_running:
                    continue
                if result.pending and not result.success:
                    # The sink took nothing: it is down or overloaded. Wait for it to answer
                    # before writing more, rather than re-delivering the same entries at once.
                    outage += 1
                    log.warning(
                        "batch left pending, waiting for the sink",
                        extra={
                            "stream": stream,
                            "pending": result.pending,
                            "reason": (result.errors or [""])[-1],
                        },
                    )
                    await self._wait_until_ready(outage)
                else:
                    outage = 0
                if result.read == 0 and not self.block_ms and ahead is None:
                    await sleep_or_stop(state.stop, self.idle_sleep)
        except BaseException:
            state.stop.set()  # the other lanes finish their batches in flight, then end
            raise
        finally:
            if ahead is not None:  # cancelled: the entries read ahead stay pending, reclaimed
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead

    async def _prepare(self) -> PreparedBatch[R] | None:
        """The next batch read and parsed, within the budget (None once it is spent)."""
        n = self.state.reserve(self.chunk)
        if n <= 0:
            return None
        try:
            prepared = await self.worker.prepare(n, block_ms=self.block_ms)
        except BaseException:
            self.state.refund(n)
            raise
        self.state.refund(n - prepared.result.read)
        return prepared

    async def _wait_until_ready(self, attempt: int) -> None:
        """Wait with backoff until ``ready()`` is true (a raising probe counts as not ready)."""
        assert self.ready is not None
        stop, backoff = self.state.stop, self.worker.backoff
        while not stop.is_set():
            await sleep_or_stop(stop, backoff.delay(attempt))
            with contextlib.suppress(Exception):
                if await self.ready():
                    return
            attempt += 1


def _record(activity: WorkerActivity, result: BatchResult) -> None:
    """What one batch tells the worker's heartbeat."""
    activity.succeeded(result.success)
    activity.dead_lettered += result.dead_lettered
    activity.left_pending += result.pending
    if result.pending and result.errors:
        activity.failed(result.errors[-1])


_NO_ANSWER = Retry("the sink gave no answer for it")


def sort_outcomes(
    items: Sequence[Item[R]], outcomes: Mapping[str, Outcome]
) -> tuple[list[str], list[tuple[Entry, str]], list[Item[R]], str]:
    """Split ``items`` by the sink's answer: the IDs to ack, the entries to dead-letter with
    their reasons, the items to write again, and the last retry reason."""
    ids = [item.entry.id for item in items]
    answers = [outcomes.get(entry_id, _NO_ANSWER) for entry_id in ids]
    if answers.count(DELIVERED) == len(answers):  # the usual case, counted in C
        return ids, [], [], ""
    delivered: list[str] = []
    rejects: list[tuple[Entry, str]] = []
    retry: list[Item[R]] = []
    last_reason = ""
    for item, outcome in zip(items, answers, strict=True):
        if isinstance(outcome, Delivered):
            delivered.append(item.entry.id)
        elif isinstance(outcome, Reject):
            rejects.append((item.entry, outcome.reason))
        else:
            retry.append(item)
            last_reason = outcome.reason
    return delivered, rejects, retry, last_reason


async def run_lanes(
    worker: StreamWorker[R],
    stop: asyncio.Event,
    *,
    lanes: int,
    batch_size: int,
    block_ms: int | None,
    ready: Callable[[], Awaitable[bool]],
    on_batch: Callable[[BatchResult], Awaitable[None]] | None = None,
    idle_sleep: float = 0.1,
    activity: WorkerActivity | None = None,
) -> None:
    """The long-running mode of :meth:`StreamWorker.run`: ``lanes`` lanes until ``stop``."""
    await worker.run(
        chunk=batch_size,
        lanes=lanes,
        stop=stop,
        ready=ready,
        block_ms=block_ms,
        on_batch=on_batch,
        idle_sleep=idle_sleep,
        activity=activity,
    )


async def run_together(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait for ``tasks`` to finish. When one raises (or this call is cancelled), the others
    are cancelled and waited for before the error goes on: none is left running."""
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def every(interval: float, stop: asyncio.Event, work: Callable[[], Awaitable[None]]) -> None:
    """Run ``work`` every ``interval`` seconds until ``stop`` (its errors are skipped: it is
    housekeeping, e.g. refreshing gauges).

    Ends on ``stop`` by itself, not only by cancellation: a library that swallows a
    cancellation (converting it into a timeout, as ``async_timeout`` can when both fall
    due together) would otherwise keep the loop going, and whoever awaits its end waits
    for ever. A cancellation requested and swallowed is raised again here."""
    task = asyncio.current_task()
    while not stop.is_set():
        with contextlib.suppress(Exception):
            await work()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        await sleep_or_stop(stop, interval)


async def sleep_or_stop(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep up to ``seconds``, waking early once ``stop`` is set (None: just sleep)."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
