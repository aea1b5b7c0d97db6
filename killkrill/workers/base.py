"""The read -> parse -> write -> ack loop both workers share, and its retry/dead-letter policy.

For each batch read from a consumer group:

1. entries delivered more than ``max_deliveries`` times, and entries the parser rejects,
   go to the dead-letter stream (atomically with their ack);
2. the rest go to the sink, which answers per entry: :class:`Delivered`, :class:`Retry` or
   :class:`Reject`. A sink that raises :class:`~killkrill.errors.RetryableError` means
   "retry all of them";
3. delivered entries are acked at once; rejected ones are dead-lettered; retryable ones are
   written again after a :class:`~killkrill.workers.retry.Backoff` delay, up to
   ``max_retries`` times, and then *left pending* (never acked), so they come back later,
   through XAUTOCLAIM, until ``max_deliveries`` sends them to the dead-letter stream.

Nothing is ever acked because the batch "was tried": only what the sink accepted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from killkrill.errors import PermanentError, RetryableError, ValidationError
from killkrill.streams.consumer import ConsumerGroup, Entry
from killkrill.workers.retry import Backoff

__all__ = [
    "DELIVERED",
    "BatchResult",
    "Delivered",
    "Item",
    "Outcome",
    "Reject",
    "Retry",
    "Sink",
    "StreamWorker",
]

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


@dataclass(frozen=True)
class Item(Generic[R]):
    """A parsed record with the stream entry it came from."""

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


class StreamWorker(Generic[R]):
    """Runs batches from ``group`` through ``parse`` into ``sink``."""

    def __init__(
        self,
        group: ConsumerGroup,
        sink: Sink[R],
        parse: Callable[[Entry], R],
        *,
        worker_name: str,
        backoff: Backoff | None = None,
        max_retries: int = 3,
        max_deliveries: int = 10,
        parse_error: type[ValidationError] = ValidationError,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        self.group = group
        self.sink = sink
        self.parse = parse
        self.worker_name = worker_name
        self.backoff = backoff or Backoff()
        self.max_retries = max_retries
        self.max_deliveries = max_deliveries
        self.parse_error = parse_error
        self._sleep = sleep

    async def _wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            await asyncio.sleep(seconds)

    async def run_batch(
        self,
        count: int,
        *,
        block_ms: int | None = None,
        max_retries: int | None = None,
        stop_on_error: bool = False,
    ) -> BatchResult:
        """Read up to ``count`` entries and see each one delivered, dead-lettered or pending.

        With ``stop_on_error``, a parse failure raises ``parse_error`` *after* the whole batch
        is handled (the bad entries are already in the dead-letter stream by then).
        """
        result, parse_failures = await self._handle_batch(count, block_ms, max_retries)
        if stop_on_error and parse_failures:
            raise self._parse_failure(parse_failures)
        return result

    async def run(
        self, count: int, *, chunk: int, max_retries: int | None = None, stop_on_error: bool = False
    ) -> BatchResult:
        """Handle up to ``count`` entries in batches of ``chunk`` until the stream is drained.

        With ``stop_on_error``, parse failures raise once, after all batches are handled.
        """
        total = BatchResult()
        parse_failures: list[str] = []
        while total.read < count:
            batch, failures = await self._handle_batch(
                min(chunk, count - total.read), None, max_retries
            )
            total.merge(batch)
            parse_failures.extend(failures)
            if batch.read == 0:
                break
        if stop_on_error and parse_failures:
            raise self._parse_failure(parse_failures)
        return total

    async def _handle_batch(
        self, count: int, block_ms: int | None, max_retries: int | None
    ) -> tuple[BatchResult, list[str]]:
        """One read and its whole handling; returns the result and the parse-failure reasons."""
        entries = await self.group.read(count, block_ms)
        result = BatchResult(read=len(entries))
        items, rejected = self._parse_all(entries)
        parse_failures = [
            reason for entry, reason in rejected if entry.deliveries <= self.max_deliveries
        ]
        await self._dead_letter(rejected, result, attempts=0)
        retries = self.max_retries if max_retries is None else max_retries
        await self._write_with_retries(items, result, retries)
        return result, parse_failures

    def _parse_failure(self, reasons: Sequence[str]) -> ValidationError:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        return self.parse_error(f"{reasons[0]}{more}; moved to {self.group.dead_letter_stream}")

    def _parse_all(self, entries: Sequence[Entry]) -> tuple[list[Item[R]], list[tuple[Entry, str]]]:
        items: list[Item[R]] = []
        rejected: list[tuple[Entry, str]] = []
        for entry in entries:
            if entry.deliveries > self.max_deliveries:
                rejected.append(
                    (
                        entry,
                        f"delivered {entry.deliveries} times without success "
                        f"(max_deliveries={self.max_deliveries})",
                    )
                )
                continue
            try:
                items.append(Item(entry, self.parse(entry)))
            except PermanentError as exc:
                rejected.append((entry, str(exc)))
        return items, rejected

    async def _dead_letter(
        self, rejected: Sequence[tuple[Entry, str]], result: BatchResult, *, attempts: int
    ) -> None:
        if rejected:
            await self.group.dead_letter(rejected, attempts=attempts, worker=self.worker_name)
            result.dead_lettered += len(rejected)
            result.errors.extend(reason for _, reason in rejected)

    async def _write_with_retries(
        self, items: Sequence[Item[R]], result: BatchResult, max_retries: int
    ) -> None:
        attempt = 0
        while items:
            attempt += 1
            result.attempts += 1
            try:
                outcomes: Mapping[str, Outcome] = await self.sink.write(items)
            except RetryableError as exc:
                outcomes = {item.entry.id: Retry(str(exc)) for item in items}
            delivered: list[str] = []
            rejects: list[tuple[Entry, str]] = []
            retry: list[Item[R]] = []
            last_reason = ""
            for item in items:
                outcome = outcomes.get(item.entry.id, Retry("the sink gave no answer for it"))
                if isinstance(outcome, Delivered):
                    delivered.append(item.entry.id)
                elif isinstance(outcome, Reject):
                    rejects.append((item.entry, outcome.reason))
                else:
                    retry.append(item)
                    last_reason = outcome.reason
            await self.group.ack(delivered)
            result.success += len(delivered)
            await self._dead_letter(rejects, result, attempts=attempt)
            if retry and attempt > max_retries:
                result.pending += len(retry)
                result.errors.extend(
                    f"left pending after {attempt} attempts: {last_reason}" for _ in retry
                )
                return
            if retry:
                result.retries += 1
                await self._wait(self.backoff.delay(attempt))
            items = retry
