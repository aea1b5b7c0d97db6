"""The load every syslog contender gets, and how the bench sees it arrive in Elasticsearch.

- :func:`syslog_stream`: the same RFC 5424 messages for everyone, octet-counted (RFC 6587),
  about ``size`` bytes each, as syslog-ng's ``loggen --syslog-proto --size 400`` sends them;
  the MSGID is ``S<seq>``, unique per message, so duplicates and losses can be told apart.
- :func:`send`: one thread per TCP connection, as fast as the receiver reads (TCP flow
  control is its back-pressure) or paced at a fixed total rate; it counts a message sent
  once its last byte was handed to the kernel, and records when (for latencies).
- :class:`Searchable`: polls ``_count`` of the contender's indices (what a search sees:
  refreshed documents) and records the curve.

Own sender rather than ``loggen``: the bench needs an exact count of what was sent (a
receiver may stop reading, a deadline may pass), a fixed rate, and the send time of each
message for latencies.
"""

from __future__ import annotations

import bisect
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

__all__ = ["Payload", "Searchable", "SendResult", "latencies", "send", "syslog_stream", "unique"]


@dataclass(frozen=True)
class Payload:
    """One connection's bytes and the end offset of each frame in them."""

    data: bytes
    ends: list[int]

    def complete(self, sent_bytes: int) -> int:
        """Frames whose last byte is within the first ``sent_bytes``."""
        return bisect.bisect_right(self.ends, sent_bytes)


def syslog_stream(count: int, connections: int, size: int = 400) -> list[Payload]:
    """``count`` messages split round-robin over ``connections`` payloads."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    frames: list[list[bytes]] = [[] for _ in range(connections)]
    for seq in range(count):
        head = (
            f"<38>1 {stamp} bench-host-{seq % 8} benchapp {4000 + seq % 50} S{seq:010d} "
            f'[meta@32473 seq="{seq}" conn="{seq % connections}"] '
            f"seq: {seq:010d}, thread: {seq % connections:04d}, payload: "
        )
        pad = max(0, size - len(head))
        msg = (head + ("abcdefghij" * (pad // 10 + 1))[:pad]).encode()
        frames[seq % connections].append(f"{len(msg)} ".encode() + msg)
    payloads = []
    for conn in frames:
        ends: list[int] = []
        total = 0
        for frame in conn:
            total += len(frame)
            ends.append(total)
        payloads.append(Payload(b"".join(conn), ends))
    return payloads


@dataclass
class SendResult:
    """What the sender handed to the kernel, and when."""

    sent: int
    seconds: float
    started: float
    """``time.time()`` of the first byte."""
    timeline: list[tuple[float, int]] = field(default_factory=list)
    """(time.time(), messages sent so far over every connection), ascending."""
    errors: list[str] = field(default_factory=list)


def _pump(
    port: int,
    payload: Payload,
    rate: float | None,
    deadline: float,
    stop: threading.Event,
    record: Callable[[int, int], None],
    index: int,
) -> str | None:
    """Send one payload on one connection; ``record(index, frames_done)`` after each send."""
    chunk = 64 * 1024
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError as exc:
        return f"connect to {port}: {exc}"
    sock.settimeout(0.2)
    offset, started = 0, time.monotonic()
    try:
        while offset < len(payload.data) and not stop.is_set():
            if time.monotonic() > deadline:
                return f"deadline passed with {len(payload.data) - offset} bytes unsent"
            end = len(payload.data)
            if rate is not None:  # the frames due by now, at most a chunk's worth
                due = int((time.monotonic() - started) * rate) + 1
                if due <= payload.complete(offset):
                    time.sleep(0.002)
                    continue
                end = payload.ends[min(due, len(payload.ends)) - 1]
            end = min(end, offset + chunk)
            try:
                offset += sock.send(payload.data[offset:end])
            except TimeoutError:
                continue
            record(index, payload.complete(offset))
    except OSError as exc:
        return f"send on {port}: {exc}"
    finally:
        sock.close()
    return None


def send(
    ports: Sequence[int],
    payloads: Sequence[Payload],
    *,
    rate: float | None = None,
    timeout: float = 600.0,
    timeline: list[tuple[float, int]] | None = None,
    stop: threading.Event | None = None,
) -> SendResult:
    """Send each payload on its own connection (to ``ports`` in turn) until all is sent,
    ``timeout`` seconds pass or ``stop`` is set; ``rate`` messages/s in total, or as fast
    as possible. ``timeline`` (appended to while sending) lets another thread follow the
    progress."""
    per_conn = rate / len(payloads) if rate else None
    done = [0] * len(payloads)
    timeline = [] if timeline is None else timeline
    lock = threading.Lock()
    stop = stop or threading.Event()
    deadline = time.monotonic() + timeout
    errors: list[str] = []

    def record(index: int, frames: int) -> None:
        with lock:
            done[index] = frames
            timeline.append((time.time(), sum(done)))

    def worker(index: int) -> None:
        error = _pump(
            ports[index % len(ports)], payloads[index], per_conn, deadline, stop, record, index
        )
        if error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(payloads))]
    started_wall, started = time.time(), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return SendResult(sum(done), time.monotonic() - started, started_wall, timeline, errors)


class Searchable:
    """Poll how many documents of ``index`` a search sees, every ``interval`` seconds.

    A poll that fails or times out (Elasticsearch paused) records nothing.
    """

    def __init__(self, es_url: str, index: str, interval: float = 0.2) -> None:
        self.url = f"{es_url}/{index}/_count?ignore_unavailable=true&allow_no_indices=true"
        self.interval = interval
        self.curve: list[tuple[float, int]] = []
        self._client = httpx.Client(timeout=2.0)

    def count(self) -> int | None:
        try:
            resp = self._client.get(self.url)
            resp.raise_for_status()
            return int(resp.json()["count"])
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def poll(self) -> int | None:
        value = self.count()
        if value is not None:
            self.curve.append((time.time(), value))
        return value

    @property
    def last(self) -> int:
        return self.curve[-1][1] if self.curve else 0

    def wait_for(
        self,
        target: Callable[[], int | None],
        *,
        stall: float,
        deadline: float,
        ready: Callable[[], bool] = lambda: True,
    ) -> int:
        """Poll until the count reaches ``target()`` (None: not known yet), or it has not
        grown for ``stall`` seconds while ``ready()`` (the sender done, Elasticsearch not
        paused), or ``deadline`` (monotonic) passes. Returns the last count."""
        progressed = time.monotonic()
        best = self.last
        while time.monotonic() < deadline:
            value = self.poll()
            goal = target()
            if value is not None and goal is not None and value >= goal and ready():
                return value
            now = time.monotonic()
            if value is not None and value > best:
                best, progressed = value, now
            if not ready():
                progressed = now
            elif now - progressed > stall:
                break
            time.sleep(self.interval)
        return self.last

    def first_time_reaching(self, count: int) -> float | None:
        """Wall time of the first poll that saw at least ``count`` documents."""
        for at, value in self.curve:
            if value >= count:
                return at
        return None

    def close(self) -> None:
        self._client.close()


def unique(es_url: str, index: str, field_name: str, expected: int) -> int:
    """Distinct values of ``field_name`` over ``index`` (exact: a composite aggregation
    paged through). ``expected`` sizes the pages."""
    after: dict[str, object] | None = None
    total = 0
    size = 10_000 if expected > 10_000 else max(expected, 10)
    with httpx.Client(timeout=120) as client:
        client.post(f"{es_url}/{index}/_refresh", params={"ignore_unavailable": "true"})
        while True:
            composite: dict[str, object] = {
                "size": size,
                "sources": [{"k": {"terms": {"field": field_name}}}],
            }
            if after is not None:
                composite["after"] = after
            resp = client.post(
                f"{es_url}/{index}/_search",
                params={"ignore_unavailable": "true", "allow_no_indices": "true"},
                json={"size": 0, "aggs": {"u": {"composite": composite}}},
            )
            resp.raise_for_status()
            agg = resp.json().get("aggregations", {}).get("u", {})
            buckets = agg.get("buckets", [])
            total += len(buckets)
            after = agg.get("after_key")
            if not buckets or after is None:
                return total


def latencies(sent: SendResult, seen: Searchable, delivered: int) -> list[float]:
    """Seconds from send to searchable of the k-th message, k = 1..delivered.

    From two curves: when the sender had sent k messages, and when a search first saw k
    documents. Exact when messages become searchable in the order they were sent; close to
    it otherwise (the bench's contenders keep order within a connection and batch in order),
    to within the poll interval.
    """
    out: list[float] = []
    times = [t for t, _ in sent.timeline]
    counts = [c for _, c in sent.timeline]
    seen_times = [t for t, _ in seen.curve]
    seen_counts = _running_max([c for _, c in seen.curve])
    for k in range(1, delivered + 1):
        i = bisect.bisect_left(counts, k)
        j = bisect.bisect_left(seen_counts, k)
        if i >= len(times) or j >= len(seen_times):
            break
        out.append(max(0.0, seen_times[j] - times[i]))
    return out


def _running_max(values: list[int]) -> list[int]:
    out: list[int] = []
    best = 0
    for v in values:
        best = max(best, v)
        out.append(best)
    return out
