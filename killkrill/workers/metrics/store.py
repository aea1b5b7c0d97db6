"""The PostgreSQL side of the metrics worker: one transaction per batch, exactly once.

In one transaction :meth:`MetricStore.apply` does, for the samples of a batch:

1. **Cardinality**: series not known to this process are looked up under a per-name advisory
   lock; new ones are admitted up to the cap (and inserted into ``metric_series``), the rest
   refused (their entries are dead-lettered as a label explosion).
2. **Ledger**: the IDs of the admitted entries go into ``metric_applied_entries`` (primary
   key: stream + entry ID). Optimistically first, with a plain ``INSERT``: when it succeeds
   no entry of the batch was applied before (the usual case), and it costs half of an
   ``ON CONFLICT`` insert. When it fails with a unique violation (a redelivery), the
   transaction is rolled back and done again carefully: ``ON CONFLICT DO NOTHING`` and
   only the IDs inserted now are aggregated, the others reported as duplicates. Either
   way a concurrent transaction holding the same ID makes this one wait for its outcome,
   so two consumers can never both apply an entry.
3. **Upsert**: the new samples folded per (name, labels, bucket), one row per group in one
   ``INSERT ... ON CONFLICT DO UPDATE`` (count and sum add, min/max combine, last by sample
   timestamp, first/last seen widen), rows sorted by key so concurrent writers lock in the
   same order and cannot deadlock.
4. ``COMMIT``. Only then are the entries reported delivered (and acked by the caller).

PostgreSQL errors are translated at this boundary, by SQLSTATE class:

* a lost or refused connection, a server shutting down or a cancelled statement (classes
  08, 57) become :class:`~killkrill.errors.ServiceUnavailable`;
* what the data of the batch caused - a data exception (class 22: a label value ``jsonb``
  cannot hold, a sum out of the ``float8`` range...), an integrity violation (23, other
  than the ledger's unique violation, handled above) or a program limit (54: a value too
  large to index) - becomes :class:`~killkrill.errors.RejectedBatch`, with PostgreSQL's
  reason: the caller splits the batch until the entries at fault are alone, dead-letters
  them and applies the rest (each part in its own transaction);
* anything else (a deadlock, a missing table, no disk space...) becomes
  :class:`~killkrill.errors.RetryableError`: the batch is retried, nothing dead-lettered.

What can be checked before PostgreSQL sees it is checked here: a fold whose sum overflows
to infinity from finite samples is refused (:class:`~killkrill.errors.RejectedBatch`)
before any SQL runs.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg2
import psycopg2.errors
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine

from killkrill.config.workers import AggregationSettings
from killkrill.errors import KillKrillError, RejectedBatch, RetryableError, ServiceUnavailable
from killkrill.workers.base import DELIVERED, Item, Outcome, Reject
from killkrill.workers.lru import Lru
from killkrill.workers.metrics.aggregate import Group, GroupKey, aggregate, labels_hash
from killkrill.workers.metrics.cardinality import SeriesCache, SeriesKey, admit
from killkrill.workers.metrics.faults import fault_point
from killkrill.workers.metrics.instruments import Instruments
from killkrill.workers.metrics.sample import Sample

__all__ = ["ApplyResult", "MetricStore", "MetricsSink"]

_LEDGER_NEW_SQL = """
INSERT INTO metric_applied_entries (stream, entry_ms, entry_seq)
SELECT %s, m, s FROM (
    SELECT split_part(e, '-', 1)::bigint AS m, split_part(e, '-', 2)::bigint AS s
    FROM unnest(%s::text[]) AS u(e)
) AS ids ORDER BY m, s
"""
"""Records the entry IDs (one text array, ``<ms>-<seq>``) of one stream, in ID order (so
concurrent transactions lock them in the same order); fails with a unique violation if
any of them is there already."""

_LEDGER_SQL = """
WITH src AS MATERIALIZED (
    SELECT e, split_part(e, '-', 1)::bigint AS m, split_part(e, '-', 2)::bigint AS s
    FROM unnest(%s::text[]) AS u(e)
), ins AS (
    INSERT INTO metric_applied_entries (stream, entry_ms, entry_seq)
    SELECT %s, m, s FROM src ORDER BY m, s
    ON CONFLICT DO NOTHING
    RETURNING entry_ms, entry_seq
)
SELECT src.e FROM src LEFT JOIN ins ON ins.entry_ms = src.m AND ins.entry_seq = src.s
WHERE ins.entry_ms IS NULL
"""
"""The careful form: records the entry IDs of one stream that are not there yet, in ID
order, and returns the IDs that were *not* inserted: those already there (applied
before, or by a concurrent transaction that committed while this one waited for it). The
common answer is no rows at all."""

_UPSERT_SQL = """
INSERT INTO aggregated_metrics AS t (pipeline, name, labels, labels_hash, type, bucket_start,
    bucket_seconds, count, sum, min, max, last, first_seen, last_seen)
SELECT %s, n, l::jsonb, h, ty, to_timestamp(b), %s, c, s, mi, ma, la, to_timestamp(f),
    to_timestamp(ls)
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],
    %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[])
    AS u(n, l, h, ty, b, c, s, mi, ma, la, f, ls)
ON CONFLICT (pipeline, name, labels_hash, bucket_seconds, bucket_start) DO UPDATE SET
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
INSERT INTO metric_series (pipeline, name, labels_hash, labels)
SELECT %s, n, h, l FROM unnest(%s::text[], %s::text[], %s::jsonb[]) AS u(n, h, l)
ON CONFLICT DO NOTHING
"""

# Every array parameter is sent as one array literal (``'{...}'``, see :func:`_floats` and
# :func:`_quoted`), not as a Python list: psycopg2 turns a list into an ``ARRAY[...]``
# expression of one constant per element, which PostgreSQL parses and plans element by
# element - about half the time of a 1,000-row upsert.

# Connection-level failures: the server is down, restarting, unreachable or cancelled us.
_UNAVAILABLE_SQLSTATE_CLASSES = ("08", "57")
# What the data caused: data exception, integrity constraint violation, program limit.
_DATA_SQLSTATE_CLASSES = ("22", "23", "54")


_ID = r"(?:0|[1-9][0-9]*)-(?:0|[1-9][0-9]*)"
_ENTRY_ID = re.compile(_ID)
_ENTRY_IDS = re.compile(f"{_ID}(?:,{_ID})*")


def _id_array(ids: Sequence[str]) -> str:
    """Stream entry IDs as one ``text[]`` literal. Checked to be canonical ``<ms>-<seq>``
    (as Redis writes them): they then need no quoting, and two different strings are never
    the same entry."""
    joined = ",".join(ids)
    if not _ENTRY_IDS.fullmatch(joined) or joined.count(",") != len(ids) - 1:
        bad = [i for i in ids if not _ENTRY_ID.fullmatch(i)]
        raise ValueError(f"not stream entry IDs (<ms>-<seq>): {bad[:5]}")
    return "{" + joined + "}"


def _floats(values: Iterable[float]) -> str:
    """A ``float8[]`` literal: ``repr`` is the shortest text that reads back to the same
    double (``inf`` for a sum that overflowed; NaN never gets this far)."""
    return "{" + ",".join(map(repr, values)) + "}"


def _ints(values: Iterable[int]) -> str:
    """A ``bigint[]`` literal."""
    return "{" + ",".join(map(str, values)) + "}"


def _quoted(values: Iterable[str]) -> str:
    """A ``text[]`` literal of values that hold no ``"`` or ``\\`` (metric names, hashes,
    types): each double-quoted, so that even a metric called ``NULL`` stays text."""
    return '{"' + '","'.join(values) + '"}'


def _array_element(text: str) -> str:
    """``text`` as one double-quoted element of an array literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DEFAULTS = AggregationSettings()


@dataclass(frozen=True, slots=True)
class _Series:
    """What the store needs of one distinct (name, labels), computed once per process."""

    key: SeriesKey
    """(name, labels hash)."""
    labels_json: str
    """The labels as a JSON object, for the ``jsonb`` columns."""
    labels_element: str
    """``labels_json`` as an element of a ``text[]`` literal."""


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
        pipeline: str = "default",
        bucket_seconds: int = 60,
        max_series_per_metric: int = 10_000,
        instruments: Instruments | None = None,
        series_cache_size: int = _DEFAULTS.series_cache_size,
    ) -> None:
        self.engine = engine
        self.pipeline = pipeline
        """Whose aggregates these are: every row written, counted and read is this one's."""
        self.bucket_seconds = bucket_seconds
        self.max_series_per_metric = max_series_per_metric
        self.instruments = instruments or Instruments()
        self.series = SeriesCache(series_cache_size)
        """Series known to be in ``metric_series`` (bounded LRU)."""
        self._series: Lru[tuple[str, tuple[tuple[str, str], ...]], _Series] = Lru(series_cache_size)
        """The encoded forms of recently seen series (bounded LRU, same size)."""

    def _series_of(self, name: str, labels: tuple[tuple[str, str], ...]) -> _Series:
        cache, key = self._series, (name, labels)
        try:
            cache.move_to_end(key)  # a hit: now the most recently used
            return cache[key]
        except KeyError:
            pass
        as_json = orjson.dumps(dict(labels)).decode()
        series = _Series((name, labels_hash(labels)), as_json, _array_element(as_json))
        cache.put(key, series)
        return series

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
        except RejectedBatch:
            self._discard(raw, None, kind="data")
            raise
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

    def _discard(self, raw: Any, exc: psycopg2.Error | None, *, kind: str | None = None) -> None:
        if kind is None:
            kind = "unavailable" if exc is None or _unavailable(exc) else _kind(exc)
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
        keys = [(stream, eid) for stream, eid, _ in items]
        if len(set(keys)) == len(keys):
            entries: Sequence[tuple[str, str, Sample]] = items
        else:  # one delivery per entry (the last one given)
            last = dict(zip(keys, (sample for _, _, sample in items), strict=True))
            entries = [(st, eid, sample) for (st, eid), sample in last.items()]
        # Folded before the ledger answers: usually every entry is new and the fold stands.
        groups = self._fold(s for _, _, s in entries)
        try:
            return self._attempt(raw, entries, groups, careful=False)
        except psycopg2.errors.UniqueViolation:  # some entry was applied before: redelivery
            raw.rollback()
        return self._attempt(raw, entries, groups, careful=True)

    def _attempt(
        self,
        raw: Any,
        entries: Sequence[tuple[str, str, Sample]],
        groups: dict[GroupKey, Group],
        *,
        careful: bool,
    ) -> tuple[ApplyResult, list[SeriesKey]]:
        """One try of the whole transaction, up to COMMIT. Not ``careful``: the ledger insert
        raises a unique violation if any entry was applied before (nothing is committed).
        ``groups`` is the fold of all ``entries``; it is folded again without the entries
        refused or found in the ledger, if any."""
        info: dict[tuple[str, tuple[tuple[str, str], ...]], _Series] = {}
        for g in groups.values():
            if (g.name, g.labels) not in info:
                info[g.name, g.labels] = self._series_of(g.name, g.labels)
        with raw.cursor() as cur:
            refused_series, admitted = self._check_cardinality(cur, list(info.values()))
            refused: dict[str, str] = {}
            refused_names: list[str] = []
            candidates = entries
            if refused_series:
                admissible: list[tuple[str, str, Sample]] = []
                for stream, eid, sample in entries:
                    reason = refused_series.get(info[sample.name, sample.labels].key)
                    if reason is None:
                        admissible.append((stream, eid, sample))
                    else:
                        refused[eid] = reason
                        refused_names.append(sample.name)
                candidates = admissible
            seen = self._record_ledger(cur, candidates, careful=careful)
            new = (
                [(st, eid, s) for st, eid, s in candidates if (st, eid) not in seen]
                if seen
                else candidates
            )
            if new is not entries:
                groups = self._fold(s for _, _, s in new)
            self._upsert(cur, groups)
        raw.commit()
        for name in refused_names:
            self.instruments.series_refused.labels(name).inc()
        applied = [eid for _, eid, _ in new]
        duplicates = [eid for st, eid, _ in candidates if (st, eid) in seen] if seen else []
        return ApplyResult(applied, duplicates, refused, len(groups)), admitted

    def _fold(self, samples: Iterable[Sample]) -> dict[GroupKey, Group]:
        """:func:`aggregate`, refusing a fold whose sum left the finite range (finite samples
        whose sum overflows): PostgreSQL would store it as infinity."""
        groups = aggregate(samples, self.bucket_seconds)
        for g in groups.values():
            if not math.isfinite(g.sum):
                raise RejectedBatch(
                    f"the sum of {g.count} samples of {g.name}{dict(g.labels)} in the bucket "
                    f"starting at {g.bucket_start} overflows a double (float8)"
                )
        return groups

    def _check_cardinality(
        self, cur: Any, series: Sequence[_Series]
    ) -> tuple[dict[SeriesKey, str], list[SeriesKey]]:
        """Refused series with reasons, and every series known after this transaction."""
        missing = self.series.missing(s.key for s in series)
        if not missing:
            return {}, []
        names = sorted({name for name, _ in missing})
        for name in names:  # sorted: concurrent workers take the locks in the same order
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended("
                "'killkrill.series:' || %s || ':' || %s, 0))",
                (self.pipeline, name),
            )
        cur.execute(
            "SELECT name, labels_hash FROM metric_series WHERE pipeline = %s AND name = ANY(%s)",
            (self.pipeline, names),
        )
        existing: dict[str, set[str]] = {name: set() for name in names}
        for name, digest in cur.fetchall():
            existing[name].add(digest)
        decision = admit(missing, existing, self.max_series_per_metric)
        if decision.new:
            labels_of = {s.key: s.labels_json for s in series}
            new = sorted(decision.new)
            cur.execute(
                _SERIES_SQL,
                (
                    self.pipeline,
                    [n for n, _ in new],
                    [h for _, h in new],
                    [labels_of[k] for k in new],
                ),
            )
        known = [(n, h) for n, hs in existing.items() for h in hs] + decision.new
        return decision.refused, known

    def _record_ledger(
        self, cur: Any, items: Sequence[tuple[str, str, Sample]], *, careful: bool
    ) -> set[tuple[str, str]]:
        """Insert the entry IDs. Not ``careful``: all of them, or raise a unique violation
        (returns an empty set). ``careful``: those not recorded yet, returning the
        ``(stream, id)`` of the others (recorded by an earlier transaction, or a concurrent
        one that committed while this one waited for it)."""
        by_stream: dict[str, list[str]] = {}
        for stream, eid, _ in items:
            ids = by_stream.get(stream)
            if ids is None:
                ids = by_stream[stream] = []
            ids.append(eid)
        seen: set[tuple[str, str]] = set()
        for stream in sorted(by_stream):
            literal = _id_array(by_stream[stream])
            if not careful:
                cur.execute(_LEDGER_NEW_SQL, (stream, literal))
                continue
            cur.execute(_LEDGER_SQL, (literal, stream))
            seen.update((stream, eid) for (eid,) in cur.fetchall())
        return seen

    def _upsert(self, cur: Any, groups: Mapping[Any, Group]) -> None:
        if not groups:
            return
        keyed = [(self._series_of(g.name, g.labels), g) for g in groups.values()]
        keyed.sort(key=lambda sg: (sg[0].key, sg[1].bucket_start))
        rows = [g for _, g in keyed]
        cur.execute(
            _UPSERT_SQL,
            (
                self.pipeline,
                self.bucket_seconds,
                _quoted([g.name for g in rows]),
                "{" + ",".join([s.labels_element for s, _ in keyed]) + "}",
                _quoted([s.key[1] for s, _ in keyed]),
                _quoted([g.type for g in rows]),
                _ints([g.bucket_start for g in rows]),
                _ints([g.count for g in rows]),
                _floats([g.sum for g in rows]),
                _floats([g.min for g in rows]),
                _floats([g.max for g in rows]),
                _floats([g.last for g in rows]),
                _floats([g.first_seen for g in rows]),
                _floats([g.last_seen for g in rows]),
            ),
        )


def _unavailable(exc: psycopg2.Error) -> bool:
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return True
    code = getattr(exc, "pgcode", None) or ""
    return code[:2] in _UNAVAILABLE_SQLSTATE_CLASSES


def _kind(exc: psycopg2.Error) -> str:
    """``db_errors`` label of an error that is not about the connection: data or other."""
    code = getattr(exc, "pgcode", None) or ""
    return "data" if code[:2] in _DATA_SQLSTATE_CLASSES else "other"


def _translate(exc: psycopg2.Error) -> KillKrillError:
    """The error to raise for ``exc`` (see the module doc)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if _unavailable(exc):
        return ServiceUnavailable(f"PostgreSQL unavailable: {text}", delay=1.0)
    code = getattr(exc, "pgcode", None) or "?"
    if _kind(exc) == "data":
        return RejectedBatch(f"PostgreSQL refused the data (SQLSTATE {code}): {text}")
    return RetryableError(f"PostgreSQL refused the batch (SQLSTATE {code}): {text}", delay=1.0)


class MetricsSink:
    """The :class:`~killkrill.workers.base.Sink` of the metrics worker.

    Runs :meth:`MetricStore.apply` in a thread (so several streams' batches overlap) and
    answers per entry: applied now or before -> Delivered; refused by the cardinality
    cap -> Reject (dead-lettered with the reason). A batch refused for what its data holds
    raises :class:`~killkrill.errors.RejectedBatch`, which the caller splits.

    The ledger key of an entry is its :attr:`~killkrill.streams.consumer.Entry.identity`
    (for an entry replayed from a dead-letter stream, the entry it replays), so a replay of
    something already applied is a duplicate; the answer is keyed by the real entry ID,
    which is what gets acknowledged.
    """

    def __init__(self, store: MetricStore) -> None:
        self.store = store

    async def write(self, items: Sequence[Item[Sample]]) -> Mapping[str, Outcome]:
        identities = [item.entry.identity for item in items]
        triples = [
            (stream, eid, item.record)
            for (stream, eid), item in zip(identities, items, strict=True)
        ]
        result = await asyncio.to_thread(self.store.apply, triples)
        instruments = self.store.instruments
        if items:
            stream = items[0].entry.stream
            instruments.applied.labels(stream).inc(len(result.applied))
            instruments.duplicates.labels(stream).inc(len(result.duplicates))
        by_identity: dict[str, Outcome] = dict.fromkeys(result.applied, DELIVERED)
        by_identity.update(dict.fromkeys(result.duplicates, DELIVERED))
        by_identity.update({eid: Reject(reason) for eid, reason in result.refused.items()})
        outcomes: dict[str, Outcome] = {}
        for (_, identity_id), item in zip(identities, items, strict=True):
            outcome = by_identity.get(identity_id)
            if outcome is not None:
                outcomes[item.entry.id] = outcome
        return outcomes
