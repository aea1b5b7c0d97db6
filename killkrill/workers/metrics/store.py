"""The PostgreSQL side of the metrics worker: one transaction per batch, exactly once.

In one transaction :meth:`MetricStore.apply` does, for the samples of a batch:

1. **Cardinality**: series not known to this process are looked up under a per-name advisory
   lock; new ones are admitted up to the cap (and inserted into ``metric_series``), the rest
   refused (their entries are dead-lettered as a label explosion).
2. **Ledger**: the IDs of the admitted entries go into ``metric_applied_entries`` with
   ``ON CONFLICT DO NOTHING RETURNING``; only the IDs returned (never applied before) are
   aggregated. A concurrent transaction holding the same ID makes this one wait for its
   outcome, so two consumers can never both apply an entry.
3. **Upsert**: the new samples folded per (name, labels, bucket), one row per group in one
   ``INSERT ... ON CONFLICT DO UPDATE`` (count and sum add, min/max combine, last by sample
   timestamp, first/last seen widen), rows sorted by key so concurrent writers lock in the
   same order and cannot deadlock.
4. ``COMMIT``. Only then are the entries reported delivered (and acked by the caller).

PostgreSQL errors are translated at this boundary: a lost or refused connection, a server
shutting down or a cancelled statement become :class:`~killkrill.errors.ServiceUnavailable`,
anything else :class:`~killkrill.errors.RetryableError`; both make the caller retry the
batch, and an entry failing ``max_deliveries`` times ends in the dead-letter stream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg2
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from killkrill.errors import RetryableError, ServiceUnavailable
from killkrill.workers.base import DELIVERED, Item, Outcome, Reject
from killkrill.workers.metrics.aggregate import Group, aggregate, labels_hash
from killkrill.workers.metrics.cardinality import SeriesCache, SeriesKey, admit
from killkrill.workers.metrics.faults import fault_point
from killkrill.workers.metrics.instruments import Instruments
from killkrill.workers.metrics.sample import Sample

__all__ = ["ApplyResult", "MetricStore", "MetricsSink"]

_LEDGER_SQL = """
INSERT INTO metric_applied_entries (stream, entry_ms, entry_seq)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[])
ON CONFLICT DO NOTHING
RETURNING stream, entry_ms, entry_seq
"""

_UPSERT_SQL = """
INSERT INTO aggregated_metrics AS t (name, labels, labels_hash, type, bucket_start,
    bucket_seconds, count, sum, min, max, last, first_seen, last_seen)
SELECT n, l::jsonb, h, ty, to_timestamp(b), %s, c, s, mi, ma, la, to_timestamp(f),
    to_timestamp(ls)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::bigint[],
    %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[])
    AS u(n, l, h, ty, b, c, s, mi, ma, la, f, ls)
ON CONFLICT (name, labels_hash, bucket_seconds, bucket_start) DO UPDATE SET
    count = t.count + EXCLUDED.count,
    sum = t.sum + EXCLUDED.sum,
    min = LEAST(t.min, EXCLUDED.min),
    max = GREATEST(t.max, EXCLUDED.max),
    last = CASE WHEN EXCLUDED.last_seen >= t.last_seen THEN EXCLUDED.last ELSE t.last END,
    type = CASE WHEN EXCLUDED.last_seen >= t.last_seen THEN EXCLUDED.type ELSE t.type END,
    first_seen = LEAST(t.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(t.last_seen, EXCLUDED.last_seen),
    updated_at = now()
"""

_SERIES_SQL = """
INSERT INTO metric_series (name, labels_hash, labels)
SELECT * FROM unnest(%s::text[], %s::text[], %s::jsonb[])
ON CONFLICT DO NOTHING
"""

# Connection-level failures: the server is down, restarting, unreachable or cancelled us.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")


def _entry_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class ApplyResult:
    """What one :meth:`MetricStore.apply` did, per entry ID."""

    applied: list[str]
    """Entries folded into the aggregates by this call."""
    duplicates: list[str]
    """Entries the ledger already had: applied by an earlier call, nothing changed now."""
    refused: dict[str, str]
    """Entries refused by the cardinality cap, with the reason."""
    rows: int = 0
    """Aggregate rows upserted."""


class MetricStore:
    """Applies batches of samples to PostgreSQL (blocking; see :class:`MetricsSink`)."""

    def __init__(
        self,
        engine: Engine,
        *,
        bucket_seconds: int = 60,
        max_series_per_metric: int = 10_000,
        instruments: Instruments | None = None,
    ) -> None:
        self.engine = engine
        self.bucket_seconds = bucket_seconds
        self.max_series_per_metric = max_series_per_metric
        self.instruments = instruments or Instruments()
        self.series = SeriesCache()
        self._hashes: dict[tuple[tuple[str, str], ...], str] = {}

    def _hash(self, labels: tuple[tuple[str, str], ...]) -> str:
        digest = self._hashes.get(labels)
        if digest is None:
            if len(self._hashes) > 1_000_000:
                self._hashes.clear()
            digest = self._hashes[labels] = labels_hash(labels)
        return digest

    def apply(self, items: Sequence[tuple[str, str, Sample]]) -> ApplyResult:
        """Apply ``(stream, entry_id, sample)`` triples in one transaction (see module doc).

        Raises :class:`ServiceUnavailable` / :class:`RetryableError` when PostgreSQL fails;
        nothing is then committed.
        """
        if not items:
            return ApplyResult([], [], {})
        started = time.perf_counter()
        try:
            raw = self.engine.raw_connection()
        except (sa_exc.DBAPIError, psycopg2.Error) as exc:
            self.instruments.db_errors.labels("connect").inc()
            orig = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
            first = str(orig).strip().splitlines()[0] if str(orig).strip() else repr(orig)
            raise ServiceUnavailable(f"PostgreSQL unreachable: {first}", delay=1.0) from exc
        try:
            result, admitted = self._transaction(raw, items)
        except psycopg2.Error as exc:
            self._discard(raw, exc)
            raise _translate(exc) from exc
        except BaseException:
            self._discard(raw, None)
            raise
        raw.close()
        self.series.add(admitted)
        fault_point("metrics.after_commit")
        elapsed = time.perf_counter() - started
        self.instruments.write_seconds.observe(elapsed)
        self.instruments.rows_upserted.inc(result.rows)
        return result

    def _discard(self, raw: Any, exc: psycopg2.Error | None) -> None:
        kind = "unavailable" if exc is None or _unavailable(exc) else "other"
        self.instruments.db_errors.labels(kind).inc()
        try:
            if exc is not None and _unavailable(exc):
                raw.invalidate()
            else:
                raw.rollback()
                raw.close()
        except Exception:  # the connection is beyond saving; the pool replaces it
            raw.invalidate()

    def _transaction(
        self, raw: Any, items: Sequence[tuple[str, str, Sample]]
    ) -> tuple[ApplyResult, list[SeriesKey]]:
        unique = {(stream, eid): s for stream, eid, s in items}  # one delivery per entry
        keyed = [(st, eid, s, (s.name, self._hash(s.labels))) for (st, eid), s in unique.items()]
        with raw.cursor() as cur:
            refused_series, admitted = self._check_cardinality(
                cur, [(k, s.labels) for _, _, s, k in keyed]
            )
            refused: dict[str, str] = {}
            candidates: list[tuple[str, str, Sample]] = []
            for stream, eid, sample, key in keyed:
                reason = refused_series.get(key)
                if reason is None:
                    candidates.append((stream, eid, sample))
                else:
                    refused[eid] = reason
                    self.instruments.series_refused.labels(sample.name).inc()
            fresh = self._record_ledger(cur, candidates)
            new_samples = [(eid, s) for stream, eid, s in candidates if (stream, eid) in fresh]
            groups = aggregate((s for _, s in new_samples), self.bucket_seconds)
            self._upsert(cur, groups)
        raw.commit()
        applied = [eid for eid, _ in new_samples]
        applied_set = set(applied)
        duplicates = [eid for _, eid, _ in candidates if eid not in applied_set]
        return ApplyResult(applied, duplicates, refused, len(groups)), admitted

    def _check_cardinality(
        self, cur: Any, keys: Sequence[tuple[SeriesKey, tuple[tuple[str, str], ...]]]
    ) -> tuple[dict[SeriesKey, str], list[SeriesKey]]:
        """Refused series with reasons, and every series known after this transaction."""
        missing = self.series.missing(k for k, _ in keys)
        if not missing:
            return {}, []
        names = sorted({name for name, _ in missing})
        for name in names:  # sorted: concurrent workers take the locks in the same order
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('killkrill.series:' || %s, 0))",
                (name,),
            )
        cur.execute("SELECT name, labels_hash FROM metric_series WHERE name = ANY(%s)", (names,))
        existing: dict[str, set[str]] = {name: set() for name in names}
        for name, digest in cur.fetchall():
            existing[name].add(digest)
        decision = admit(missing, existing, self.max_series_per_metric)
        if decision.new:
            labels_of = dict(keys)
            new = sorted(decision.new)
            cur.execute(
                _SERIES_SQL,
                (
                    [n for n, _ in new],
                    [h for _, h in new],
                    [orjson.dumps(dict(labels_of[k])).decode() for k in new],
                ),
            )
        known = [(n, h) for n, hs in existing.items() for h in hs] + decision.new
        return decision.refused, known

    def _record_ledger(
        self, cur: Any, items: Sequence[tuple[str, str, Sample]]
    ) -> set[tuple[str, str]]:
        """Insert the entry IDs; return ``(stream, id)`` of those not recorded before."""
        if not items:
            return set()
        streams: list[str] = []
        ms: list[int] = []
        seq: list[int] = []
        for stream, eid, _ in items:
            a, b = _entry_id(eid)
            streams.append(stream)
            ms.append(a)
            seq.append(b)
        cur.execute(_LEDGER_SQL, (streams, ms, seq))
        return {(stream, f"{a}-{b}") for stream, a, b in cur.fetchall()}

    def _upsert(self, cur: Any, groups: Mapping[Any, Group]) -> None:
        if not groups:
            return
        rows = sorted(groups.values(), key=lambda g: (g.name, self._hash(g.labels), g.bucket_start))
        cur.execute(
            _UPSERT_SQL,
            (
                self.bucket_seconds,
                [g.name for g in rows],
                [orjson.dumps(dict(g.labels)).decode() for g in rows],
                [self._hash(g.labels) for g in rows],
                [g.type for g in rows],
                [float(g.bucket_start) for g in rows],
                [g.count for g in rows],
                [g.sum for g in rows],
                [g.min for g in rows],
                [g.max for g in rows],
                [g.last for g in rows],
                [g.first_seen for g in rows],
                [g.last_seen for g in rows],
            ),
        )


def _unavailable(exc: psycopg2.Error) -> bool:
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return True
    code = getattr(exc, "pgcode", None) or ""
    return code[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


def _translate(exc: psycopg2.Error) -> RetryableError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if _unavailable(exc):
        return ServiceUnavailable(f"PostgreSQL unavailable: {text}", delay=1.0)
    return RetryableError(f"PostgreSQL refused the batch: {text}", delay=1.0)


class MetricsSink:
    """The :class:`~killkrill.workers.base.Sink` of the metrics worker.

    Runs :meth:`MetricStore.apply` in a thread (so several streams' batches overlap) and
    answers per entry: applied now or before -> Delivered; refused by the cardinality
    cap -> Reject (dead-lettered with the reason).
    """

    def __init__(self, store: MetricStore) -> None:
        self.store = store

    async def write(self, items: Sequence[Item[Sample]]) -> Mapping[str, Outcome]:
        triples = [(item.entry.stream, item.entry.id, item.record) for item in items]
        result = await asyncio.to_thread(self.store.apply, triples)
        instruments = self.store.instruments
        if items:
            stream = items[0].entry.stream
            instruments.applied.labels(stream).inc(len(result.applied))
            instruments.duplicates.labels(stream).inc(len(result.duplicates))
        outcomes: dict[str, Outcome] = dict.fromkeys(result.applied, DELIVERED)
        outcomes.update(dict.fromkeys(result.duplicates, DELIVERED))
        outcomes.update({eid: Reject(reason) for eid, reason in result.refused.items()})
        return outcomes
