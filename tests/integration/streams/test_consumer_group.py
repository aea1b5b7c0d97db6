"""The shared consumer machinery against a real Redis: groups, reclaim, ack, dead letters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio as aioredis

from killkrill.errors import (
    DeadLetterFull,
    LogParseError,
    RejectedBatch,
    ServiceUnavailable,
    ValidationError,
)
from killkrill.streams import async_client
from killkrill.streams.consumer import ConsumerGroup, Entry
from killkrill.streams.dead_letter import DeadLetterFilter, iter_dead_letters
from killkrill.streams.replay import purge_dead_letters, replay_dead_letters
from killkrill.workers.base import (
    DELIVERED,
    BatchResult,
    Item,
    Outcome,
    Reject,
    Retry,
    StreamWorker,
    parse_each,
    run_lanes,
)
from killkrill.workers.retry import Backoff

STREAM = "unit-stream"


@pytest.fixture
async def aclient(redis_url: str, redis_client: redis.Redis) -> AsyncIterator[aioredis.Redis]:
    client = async_client(redis_url)
    yield client
    await client.aclose()


def _add(redis_client: redis.Redis, *payloads: object) -> list[str]:
    return [
        redis_client.xadd(
            STREAM, {"data": json.dumps(p) if not isinstance(p, bytes) else p}
        ).decode()
        for p in payloads
    ]


def parse(entry: Entry) -> dict[str, object]:
    try:
        record = json.loads(entry.data)
    except ValueError as exc:
        raise LogParseError(f"not JSON: {exc}", field="data") from exc
    if not isinstance(record, dict) or "n" not in record:
        raise LogParseError("required field is missing", field="n")
    return record


class ScriptedSink:
    """A sink answering from a script of outcomes per attempt (our own boundary)."""

    def __init__(self, *script: Mapping[int, Outcome] | Exception) -> None:
        self.script = list(script)
        self.calls: list[list[int]] = []

    async def write(self, items: Sequence[Item[dict[str, object]]]) -> Mapping[str, Outcome]:
        ns = [int(str(item.record["n"])) for item in items]
        self.calls.append(ns)
        step = self.script.pop(0) if self.script else {}
        if isinstance(step, Exception):
            raise step
        return {item.entry.id: step.get(n, DELIVERED) for n, item in zip(ns, items, strict=True)}


def _worker(
    client: aioredis.Redis, sink: ScriptedSink, **kw: int
) -> StreamWorker[dict[str, object]]:
    group = ConsumerGroup(client, STREAM, "g", "c1", claim_idle_ms=kw.pop("claim_idle_ms", 60_000))
    return StreamWorker(
        group,
        sink,
        parse_each(parse),
        worker_name="test-worker",
        backoff=Backoff(base=0.001, cap=0.01),
        parse_error=LogParseError,
        **kw,
    )


async def test_ensure_is_idempotent_and_creates_stream(aclient: aioredis.Redis) -> None:
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    await group.ensure()
    assert await aclient.exists(STREAM) == 1
    assert [g["name"] for g in await aclient.xinfo_groups(STREAM)] == [b"g"]


async def test_ensure_does_not_swallow_other_errors(aclient: aioredis.Redis) -> None:
    await aclient.set(STREAM, "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await ConsumerGroup(aclient, STREAM, "g", "c1").ensure()


async def test_ack_deletes_so_length_is_backlog(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    _add(redis_client, {"n": 1}, {"n": 2}, {"n": 3})
    entries = await group.read(2)
    assert [e.deliveries for e in entries] == [1, 1]
    await group.ack([e.id for e in entries])
    assert redis_client.xlen(STREAM) == 1
    assert await group.pending() == 0
    assert await group.lag() == 1


async def test_idle_pending_entries_of_a_dead_consumer_are_reclaimed(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    dead = ConsumerGroup(aclient, STREAM, "g", "dead", claim_idle_ms=50)
    await dead.ensure()
    ids = _add(redis_client, {"n": 1}, {"n": 2})
    assert [e.id for e in await dead.read(10)] == ids
    alive = ConsumerGroup(aclient, STREAM, "g", "alive", claim_idle_ms=50)
    assert await alive.read(10) == []  # not idle long enough yet
    await asyncio.sleep(0.1)
    reclaimed = await alive.read(10)
    assert [e.id for e in reclaimed] == ids
    assert [e.deliveries for e in reclaimed] == [2, 2]
    await alive.ack(ids)
    assert await alive.pending() == 0


async def test_dead_letter_keeps_payload_and_reason_and_replay_restores(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    raw = b'{"n": \xff broken'
    [entry_id] = _add(redis_client, raw)
    [entry] = await group.read(1)
    await group.dead_letter([(entry, "not JSON")], attempts=1, worker="w1")
    assert redis_client.xlen(STREAM) == 0
    assert await group.pending() == 0
    [letter] = list(iter_dead_letters(redis_client, group.dead_letter_stream))
    assert (letter.data, letter.reason, letter.source_stream, letter.source_id) == (
        raw,
        "not JSON",
        STREAM,
        entry_id,
    )
    assert (letter.attempts, letter.worker) == (1, "w1")
    assert letter.failed_at > 0
    report = replay_dead_letters(redis_client, group.dead_letter_stream)
    assert [old for old, _ in report.replayed] == [letter.id]
    assert redis_client.xlen(group.dead_letter_stream) == 0
    [(_, fields)] = redis_client.xrange(STREAM)
    assert fields[b"data"] == raw


async def test_identity_is_the_first_entry_through_every_replay(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """Dead-lettered, replayed, dead-lettered and replayed again: the entry on the stream
    has a new ID each time, its identity stays the first entry's."""
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    [first_id] = _add(redis_client, {"n": 1})
    for _round in range(2):
        [entry] = await group.read(1)
        assert entry.identity == (STREAM, first_id)
        await group.dead_letter([(entry, "still failing")], attempts=1, worker="w")
        [letter] = list(iter_dead_letters(redis_client, group.dead_letter_stream))
        assert (letter.origin_stream, letter.origin_id) == (STREAM, first_id)
        [(_, new)] = replay_dead_letters(redis_client, group.dead_letter_stream).replayed
        assert new not in (first_id, entry.id)
    [entry] = await group.read(1)
    assert entry.id != first_id
    assert entry.identity == (STREAM, first_id)
    await group.ack([entry.id])  # acknowledging uses the real ID
    assert redis_client.xlen(STREAM) == 0


@pytest.mark.parametrize(
    ("fields", "identity"),
    [
        ({b"data": b"{}"}, "own"),
        ({b"data": b"{}", b"origin_stream": b"s", b"origin_id": b"5-1"}, ("s", "5-1")),
        ({b"data": b"{}", b"origin_stream": b"s", b"origin_id": b"nope"}, "own"),
        ({b"data": b"{}", b"origin_id": b"5-1"}, "own"),
        ({b"data": b"{}", b"origin_stream": b"", b"origin_id": b"5-1"}, "own"),
    ],
)
def test_entry_identity_of_fields(fields: dict[bytes, bytes], identity: object) -> None:
    entry = Entry(STREAM, "9-0", fields)
    assert entry.identity == ((STREAM, "9-0") if identity == "own" else identity)


async def test_a_full_dead_letter_stream_moves_what_fits_and_leaves_the_rest_pending(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    refused: list[int] = []
    group = ConsumerGroup(
        aclient, STREAM, "g", "c1", max_dead_letters=5, on_dead_letter_refused=refused.append
    )
    await group.ensure()
    ids = _add(redis_client, *(f"{{bad {i}".encode() for i in range(10)))
    entries = await group.read(10)
    assert await group.dead_letter_problem() is None
    with pytest.raises(DeadLetterFull, match="is full") as info:
        await group.dead_letter([(e, "bad") for e in entries], attempts=1, worker="w")
    assert "killkrill dlq" in str(info.value)
    assert refused == [5]
    letters = list(iter_dead_letters(redis_client, group.dead_letter_stream))
    assert [letter.source_id for letter in letters] == ids[:5]  # the first five, in order
    assert redis_client.xlen(STREAM) == 5  # the rest: still there, pending, not lost
    assert await group.pending() == 5
    problem = await group.dead_letter_problem()
    assert problem is not None and "5 of 5" in problem
    _add(redis_client, {"n": "later"})
    with pytest.raises(DeadLetterFull, match="5 of 5"):  # reads nothing while full
        await group.read(10)
    [info] = redis_client.xinfo_groups(STREAM)
    assert info["lag"] == 1
    assert len(purge_dead_letters(redis_client, group.dead_letter_stream, DeadLetterFilter())) == 5
    [later] = await group.read(10)  # room again: reading resumes by itself
    assert later.data == b'{"n": "later"}'
    assert await group.dead_letter_problem() is None


async def test_batch_delivers_rejects_and_dead_letters_parse_failures(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    _add(redis_client, {"n": 1}, {"bad": True}, {"n": 3}, b"{not json")
    sink = ScriptedSink({3: Reject("mapper_parsing_exception: n is not a date")})
    result = await _worker(aclient, sink).run(10, chunk=10)
    assert (result["success"], result["failed"], result.dead_lettered) == (1, 3, 3)
    letters = list(iter_dead_letters(redis_client, f"{STREAM}:dead-letter"))
    reasons = sorted(letter.reason for letter in letters)
    assert any("n: required field is missing" in r for r in reasons)
    assert any("not JSON" in r for r in reasons)
    assert any("mapper_parsing_exception" in r for r in reasons)
    assert redis_client.xlen(STREAM) == 0


async def test_stop_on_error_raises_after_handling_the_rest(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    _add(redis_client, {"n": 1}, {"bad": True}, {"n": 3})
    sink = ScriptedSink()
    with pytest.raises(LogParseError, match="moved to unit-stream:dead-letter"):
        await _worker(aclient, sink).run(10, chunk=10, stop_on_error=True)
    assert sink.calls == [[1, 3]]
    assert redis_client.xlen(STREAM) == 0
    assert redis_client.xlen(f"{STREAM}:dead-letter") == 1


async def test_retryable_items_are_retried_then_delivered(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    _add(redis_client, {"n": 1}, {"n": 2})
    sink = ScriptedSink(ServiceUnavailable("timeout"), {2: Retry("429 too many requests")})
    result = await _worker(aclient, sink).run(10, chunk=10, max_retries=2)
    assert sink.calls == [[1, 2], [1, 2], [2]]
    assert (result.success, result.failed, result.retries, result.attempts) == (2, 0, 2, 3)
    assert redis_client.xlen(STREAM) == 0


async def test_transient_failures_never_count_as_deliveries(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """A sink busy far longer than ``max_deliveries`` reclaims: every delivery that ended in
    Retry is handed back, so the entry is delivered once the sink answers, never
    dead-lettered."""
    _add(redis_client, {"n": 1})
    always_busy = [{1: Retry("503 unavailable")}] * 8
    worker = _worker(aclient, ScriptedSink(*always_busy), claim_idle_ms=0, max_deliveries=2)
    for _ in range(8):  # 8 deliveries > max_deliveries, each reclaimed (idle >= 0 ms)
        result = await worker.run(1, chunk=1, max_retries=0)
        assert (result.success, result.pending, result.dead_lettered) == (0, 1, 0)
        [row] = redis_client.xpending_range(STREAM, "g", "-", "+", 10)
        assert row["times_delivered"] == 0  # this delivery handed back
    result = await worker.run(1, chunk=1)
    assert (result.success, result.dead_lettered) == (1, 0)
    assert redis_client.xlen(f"{STREAM}:dead-letter") == 0
    assert redis_client.xlen(STREAM) == 0


class CrashingSink(ScriptedSink):
    """A poison record that makes the worker fail in a way no verdict covers (a bug, a crash)."""

    async def write(self, items: Sequence[Item[dict[str, object]]]) -> Mapping[str, Outcome]:
        self.calls.append([int(str(item.record["n"])) for item in items])
        raise RuntimeError("segfault-like crash on this record")


async def test_a_poison_entry_that_crashes_the_worker_still_reaches_the_dead_letter_stream(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    [entry_id] = _add(redis_client, {"n": 1})
    worker = _worker(aclient, CrashingSink(), claim_idle_ms=0, max_deliveries=2)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            await worker.run(1, chunk=1)
    result = await worker.run(1, chunk=1)  # the 3rd delivery: past max_deliveries
    assert result.dead_lettered == 1
    [letter] = iter_dead_letters(redis_client, f"{STREAM}:dead-letter")
    assert (letter.source_id, letter.attempts) == (entry_id, 3)
    assert "delivered 3 times" in letter.reason
    assert redis_client.xlen(STREAM) == 0


class RefusingSink(ScriptedSink):
    """Refuses, as a whole, every write holding a record whose ``n`` is in ``bad``."""

    def __init__(self, *bad: int) -> None:
        super().__init__()
        self.bad = set(bad)

    async def write(self, items: Sequence[Item[dict[str, object]]]) -> Mapping[str, Outcome]:
        ns = [int(str(item.record["n"])) for item in items]
        self.calls.append(ns)
        guilty = sorted(self.bad.intersection(ns))
        if guilty:
            raise RejectedBatch(f"value out of range in record {guilty[0]}")
        return {item.entry.id: DELIVERED for item in items}


async def test_a_batch_refused_for_good_is_split_down_to_the_entries_at_fault(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    ids = _add(redis_client, *[{"n": i} for i in range(10)])
    sink = RefusingSink(3, 7)
    result = await _worker(aclient, sink).run(10, chunk=10)
    assert (result.success, result.dead_lettered, result.pending) == (8, 2, 0)
    delivered = sorted(n for call in sink.calls[1:] for n in call if not sink.bad & set(call))
    assert delivered == [0, 1, 2, 4, 5, 6, 8, 9]  # each written exactly once
    assert sink.calls[0] == list(range(10))
    assert len(sink.calls) == result.attempts <= 2 * 2 * 4  # halves, down to the two at fault
    letters = {
        d.source_id: d.reason for d in iter_dead_letters(redis_client, f"{STREAM}:dead-letter")
    }
    assert letters == {
        ids[3]: "value out of range in record 3",
        ids[7]: "value out of range in record 7",
    }
    assert redis_client.xlen(STREAM) == 0


async def test_a_stop_cuts_a_long_retry_backoff_short(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """In a retry backoff of an hour, a stop request returns at once; the entries stay
    pending (this delivery handed back) for whoever comes next."""
    _add(redis_client, {"n": 1}, {"n": 2})
    waiting = asyncio.Event()

    class HourLong(Backoff):
        def delay(self, attempt: int) -> float:
            waiting.set()  # the lane sleeps right after asking
            return 3600.0

    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    busy = ScriptedSink(*[{2: Retry("429 too many requests")}] * 3)
    worker = StreamWorker(
        group, busy, parse_each(parse), worker_name="test-worker", backoff=HourLong()
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(10, chunk=10, stop=stop))
    await asyncio.wait_for(waiting.wait(), timeout=10)
    stop.set()
    result = await asyncio.wait_for(running, timeout=5)
    assert (result.success, result.pending, result.retries) == (1, 1, 1)
    [row] = redis_client.xpending_range(STREAM, "g", "-", "+", 10)
    assert row["times_delivered"] == 0


async def test_run_drains_in_chunks_and_raises_parse_error_last(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    _add(redis_client, *[{"n": i} for i in range(25)], {"bad": 1})
    sink = ScriptedSink()
    with pytest.raises(ValidationError):
        await _worker(aclient, sink).run(100, chunk=10, stop_on_error=True)
    assert sum(len(c) for c in sink.calls) == 25
    assert max(len(c) for c in sink.calls) <= 10
    assert redis_client.xlen(STREAM) == 0
    result = await _worker(aclient, sink).run(100, chunk=10)
    assert result == BatchResult()


async def test_run_never_reads_more_than_count_even_when_a_batch_has_parse_errors(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    _add(redis_client, {"bad": 1}, *[{"n": i} for i in range(25)])
    sink = ScriptedSink()
    with pytest.raises(LogParseError, match="required field is missing"):
        await _worker(aclient, sink).run(12, chunk=10, stop_on_error=True)
    assert sum(len(c) for c in sink.calls) == 11  # 12 read: 1 dead-lettered, 11 delivered
    assert redis_client.xlen(STREAM) == 26 - 12


async def test_dead_letter_stream_can_be_named(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    group = ConsumerGroup(aclient, STREAM, "g", "c1", dead_letter_key="custom-dlq")
    await group.ensure()
    _add(redis_client, b"x")
    [entry] = await group.read(1)
    await group.dead_letter([(entry, "bad")], attempts=1, worker="w")
    assert redis_client.xlen("custom-dlq") == 1


async def test_an_empty_reclaim_scan_is_repeated_only_after_the_interval(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    dead = ConsumerGroup(aclient, STREAM, "g", "dead")
    await dead.ensure()
    ids = _add(redis_client, {"n": 1})
    await dead.read(10)
    alive = ConsumerGroup(aclient, STREAM, "g", "alive", claim_idle_ms=50, reclaim_interval_ms=400)
    assert await alive.read(10) == []  # scanned: nothing idle long enough yet
    await asyncio.sleep(0.1)
    assert await alive.read(10) == []  # idle enough now, but the next scan is not due
    await asyncio.sleep(0.35)
    assert [e.id for e in await alive.read(10)] == ids


async def test_reclaim_interval_defaults_to_half_the_idle_time(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    dead = ConsumerGroup(aclient, STREAM, "g", "dead")
    await dead.ensure()
    ids = _add(redis_client, {"n": 1})
    await dead.read(10)
    alive = ConsumerGroup(aclient, STREAM, "g", "alive", claim_idle_ms=100)
    assert await alive.read(10) == []
    await asyncio.sleep(0.12)  # > claim_idle_ms and > the default interval (50 ms)
    assert [e.id for e in await alive.read(10)] == ids


async def test_a_scan_that_claimed_entries_continues_on_the_next_read(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    dead = ConsumerGroup(aclient, STREAM, "g", "dead")
    await dead.ensure()
    ids = _add(redis_client, *[{"n": i} for i in range(5)])
    await dead.read(10)
    await asyncio.sleep(0.06)
    alive = ConsumerGroup(
        aclient, STREAM, "g", "alive", claim_idle_ms=50, reclaim_interval_ms=60_000
    )
    first = await alive.read(3)
    second = await alive.read(3)
    assert [e.id for e in first + second] == ids
    assert all(e.deliveries == 2 for e in first + second)


async def test_block_0_does_not_wait(aclient: aioredis.Redis) -> None:
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    assert await asyncio.wait_for(group.read(10, block_ms=0), timeout=2) == []


async def test_block_waits_for_new_entries(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    reading = asyncio.create_task(group.read(10, block_ms=2000))
    await asyncio.sleep(0.1)
    ids = _add(redis_client, {"n": 1})
    assert [e.id for e in await asyncio.wait_for(reading, timeout=3)] == ids


@pytest.mark.parametrize("protocol", [2, 3])
async def test_read_and_ack_with_either_protocol(
    redis_url: str, redis_client: redis.Redis, protocol: int
) -> None:
    client = aioredis.Redis.from_url(redis_url, protocol=protocol)
    try:
        group = ConsumerGroup(client, STREAM, "g", "c1")
        await group.ensure()
        ids = _add(redis_client, {"n": 1}, b"\xff raw bytes")
        redis_client.xadd(STREAM, {"data": b"{}", "v": "1", "extra": "x"})
        entries = await group.read(10)
        assert [e.id for e in entries][:2] == ids
        assert [e.data for e in entries] == [b'{"n": 1}', b"\xff raw bytes", b"{}"]
        assert entries[2].fields == {b"data": b"{}", b"v": b"1", b"extra": b"x"}
        await group.ack([e.id for e in entries])
        assert redis_client.xlen(STREAM) == 0
        assert await group.pending() == 0
    finally:
        await client.aclose()


async def test_read_recreates_a_deleted_group(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    redis_client.delete(STREAM)
    ids = _add(redis_client, {"n": 1})
    assert [e.id for e in await group.read(10)] == ids


async def test_a_stream_deleted_under_a_blocked_read_is_recreated_and_read_again(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    """XREADGROUP BLOCK answers ``UNBLOCKED the stream key no longer exists`` when the
    stream goes away while it waits (a flush, a DEL): the read recreates stream and group
    and goes on, instead of ending the worker."""
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    reading = asyncio.create_task(group.read(10, block_ms=3000))
    await asyncio.sleep(0.2)  # blocked in XREADGROUP
    redis_client.delete(STREAM)
    assert await asyncio.wait_for(reading, timeout=5) == []
    ids = _add(redis_client, {"n": 1})
    assert [e.id for e in await group.read(10)] == ids


class _ReplyDropper:
    """A TCP proxy in front of Redis that can swallow Redis's replies: commands still run,
    their answers never reach the client (a reply lost on the way, a client that stopped
    reading in time)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.drop = False
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, replies: bool) -> None:
            while data := await src.read(65536):
                if not (replies and self.drop):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(
            pump(reader, up_writer, False), pump(up_reader, writer, True), return_exceptions=True
        )

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_entries_delivered_to_a_read_that_failed_are_taken_again_at_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A read whose reply never arrives (the client times out while Redis delivered the
    entries to it): the next read finds them pending for this consumer and in no batch of
    its, and takes them again at once, the lost delivery not counted - instead of waiting
    ``claim_idle_ms`` for XAUTOCLAIM."""
    parts = urlsplit(redis_url)
    proxy = _ReplyDropper(parts.hostname or "127.0.0.1", parts.port or 6379)
    port = await proxy.start()
    client = async_client(redis_url.replace(f":{parts.port}/", f":{port}/"), socket_timeout=0.5)
    try:
        group = ConsumerGroup(client, STREAM, "g", "c1", claim_idle_ms=3_600_000)
        await group.ensure()
        in_flight = _add(redis_client, {"n": 0})
        assert [e.id for e in await group.read(1)] == in_flight  # a batch in flight
        ids = _add(redis_client, {"n": 1}, {"n": 2})
        proxy.drop = True
        with pytest.raises(ServiceUnavailable):
            await group.read(10)
        proxy.drop = False
        assert redis_client.xpending(STREAM, "g")["pending"] == 3  # delivered, not received
        again = await group.read(10)
        assert [e.id for e in again] == ids  # not the entry in flight
        assert [e.deliveries for e in again] == [1, 1]
        await group.ack([*in_flight, *ids])
        assert await group.read(10) == []  # nothing more to find
    finally:
        await client.aclose()
        await proxy.close()


async def test_lanes_reading_at_once_take_each_lost_entry_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Three reads lost at once (a worker paused while its three lanes waited in XREADGROUP,
    as seen with SIGSTOP): the lanes' next reads, concurrent, take back every lost entry,
    each exactly once, none left pending."""
    parts = urlsplit(redis_url)
    proxy = _ReplyDropper(parts.hostname or "127.0.0.1", parts.port or 6379)
    port = await proxy.start()
    client = async_client(redis_url.replace(f":{parts.port}/", f":{port}/"), socket_timeout=0.5)
    try:
        group = ConsumerGroup(client, STREAM, "g", "c1", claim_idle_ms=3_600_000)
        await group.ensure()
        # three lanes, three connections of the pool (the reclaim scan done meanwhile)
        assert await asyncio.gather(*(group.read(10) for _ in range(3))) == [[], [], []]
        ids = _add(redis_client, *({"n": i} for i in range(30)))
        proxy.drop = True
        failed = await asyncio.gather(*(group.read(10) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(f, ServiceUnavailable) for f in failed), failed
        proxy.drop = False
        batches = await asyncio.gather(*(group.read(10) for _ in range(3)))
        got = [e.id for batch in batches for e in batch]
        assert sorted(got) == sorted(ids) and len(set(got)) == 30
        await group.ack(got)
        assert await group.read(10) == []
        assert redis_client.xpending(STREAM, "g")["pending"] == 0
    finally:
        await client.aclose()
        await proxy.close()


async def test_ack_failure_inside_the_transaction_is_reported(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    group = ConsumerGroup(aclient, STREAM, "g", "c1")
    await group.ensure()
    _add(redis_client, {"n": 1})
    [entry] = await group.read(1)
    redis_client.delete(STREAM)
    redis_client.set(STREAM, "not a stream")
    with pytest.raises(ServiceUnavailable, match="WRONGTYPE"):
        await group.ack([entry.id])
    assert await aclient.ping()  # the connection is still usable


async def test_run_lanes_drains_waits_for_readiness_after_an_outage_and_stops(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    _add(redis_client, *[{"n": i} for i in range(30)])
    # No retries within a batch: the first batch is left pending, so the lane must wait for
    # readiness; its entries come back through the reclaim once idle for 300 ms.
    sink = ScriptedSink(ServiceUnavailable("sink down"), *([{}] * 50))
    worker = _worker(aclient, sink, max_retries=0, claim_idle_ms=300)
    await worker.group.ensure()
    stop = asyncio.Event()
    probes: list[int] = []
    seen: list[BatchResult] = []

    async def ready() -> bool:
        probes.append(1)
        return len(probes) >= 2  # not ready at the first probe

    async def on_batch(result: BatchResult) -> None:
        seen.append(result)
        if sum(r.success for r in seen) == 30:
            stop.set()

    await asyncio.wait_for(
        run_lanes(
            worker,
            stop,
            lanes=2,
            batch_size=7,
            block_ms=None,
            ready=ready,
            on_batch=on_batch,
            idle_sleep=0.01,
        ),
        timeout=20,
    )
    assert len(probes) >= 2
    assert sum(r.success for r in seen) == 30
    assert redis_client.xlen(STREAM) == 0
    assert await worker.group.pending() == 0
    assert max(len(c) for c in sink.calls) <= 7


async def test_reclaimed_entries_get_their_exact_delivery_count_among_many_pending(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    # Between two reclaimed entries, 25 entries pending for the reclaiming consumer itself:
    # a range query for the delivery counts (capped at 4 x 3 + 10 rows) would miss `last`.
    # Only `dead`'s entries are made idle (XCLAIM IDLE JUSTID: owner and counts unchanged),
    # so no timing on a busy machine decides what is reclaimed.
    idle_ms = 60_000
    dead = ConsumerGroup(aclient, STREAM, "g", "dead", claim_idle_ms=idle_ms)
    await dead.ensure()
    [first] = _add(redis_client, {"n": 0})
    await dead.read(1)
    _add(redis_client, *[{"n": i} for i in range(1, 26)])
    alive = ConsumerGroup(aclient, STREAM, "g", "alive", claim_idle_ms=idle_ms)
    assert len(await alive.read(25)) == 25
    [last] = _add(redis_client, {"n": 26})
    await dead.read(1)
    for _ in range(2):  # two more deliveries of `last` to `dead` (reading its history)
        redis_client.xreadgroup("g", "dead", {STREAM: first})
    redis_client.xclaim(STREAM, "g", "dead", 0, [first, last], idle=2 * idle_ms, justid=True)
    # A fresh handle of `alive` (its next reclaim is due at once)
    alive = ConsumerGroup(aclient, STREAM, "g", "alive", claim_idle_ms=idle_ms)
    claimed = await alive.read(3)
    assert {e.id: e.deliveries for e in claimed} == {first: 2, last: 4}


async def test_run_in_lanes_shares_the_budget_and_reads_each_entry_once(
    aclient: aioredis.Redis, redis_client: redis.Redis
) -> None:
    _add(redis_client, *[{"n": i} for i in range(25)], {"bad": 1})
    sink = ScriptedSink()
    worker = _worker(aclient, sink)
    result = await worker.run(20, chunk=5, lanes=3)
    delivered = [n for call in sink.calls for n in call]
    assert result.read == 20
    assert sorted(delivered) == list(range(20))
    assert max(len(c) for c in sink.calls) <= 5
    with pytest.raises(LogParseError):  # the rest, parse failure raised after all is handled
        await worker.run(100, chunk=5, lanes=3, stop_on_error=True)
    assert sorted(n for call in sink.calls for n in call) == list(range(25))
    assert redis_client.xlen(STREAM) == 0
