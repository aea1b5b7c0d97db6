"""Settings of the workers: the shared consumer/retry groups and the log worker's root.

* :class:`ConsumerSettings` - how a worker reads its stream through a consumer group
  (batch size, blocking read, reclaim of dead consumers' entries, delivery cap).
* :class:`RetrySettings` - how often and how patiently a batch's retryable items are
  written again before they are left pending for a later delivery.
* :class:`LogTransformSettings` - what the log worker adds to, drops from and renames in
  each record.
* :class:`OpsSettings` - the small HTTP port with ``/healthz``, ``/readyz``, ``/metrics``.
* :class:`LogWorkerSettings` - everything one log worker process reads; build it with
  :meth:`LogWorkerSettings.load` (defaults < config file < ``KILLKRILL_*`` env <
  ``REDIS_URL``/``ELASTICSEARCH_URL`` < flags); the seed's flat dict is translated into it
  by :func:`killkrill.workers.logs.settings_from_seed`.
"""

from __future__ import annotations

import math
import re
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from killkrill import __version__
from killkrill.config.backoff import Backoff
from killkrill.config.common import (
    DatabaseSettings,
    ElasticsearchSettings,
    ProcessSettings,
    RedisSettings,
    _Group,
)

__all__ = [
    "AggregationSettings",
    "ConsumerSettings",
    "ExpositionSettings",
    "LogTransformSettings",
    "LogWorkerSettings",
    "MetricsWorkerSettings",
    "OpsSettings",
    "RetentionSettings",
    "RetrySettings",
    "pending_bound_seconds",
]


class ConsumerSettings(_Group):
    """How a worker reads its stream through a consumer group (shared by every worker)."""

    group: str | None = Field(
        default=None,
        min_length=1,
        description="Consumer group name. Default: the worker kind (`log-worker`), so every "
        "replica of one kind shares the work of a stream.",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        description="This process's consumer name. Default `<pod or host>-<pid>`; must be unique "
        "per running process, or two processes would share one pending list.",
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        le=100_000,
        description="Entries read, and written to the sink, per batch (default 500).",
    )
    in_flight: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Sink writes (e.g. `_bulk` requests) one long-running process keeps open "
        "at once (default 2); the worker also keeps one more batch read and parsed ahead, so "
        "the sink never waits for Redis. The sync `process_batch` API is always sequential.",
    )
    block_ms: int = Field(
        default=1000,
        ge=0,
        description="Milliseconds a read waits for new entries when the stream is empty "
        "(default 1000, or half of redis.socket_timeout when that is shorter; 0 means do not "
        "wait). Must be below redis.socket_timeout. Bounds how long SIGTERM waits on an idle "
        "worker.",
    )
    claim_idle_ms: int = Field(
        default=60_000,
        ge=1,
        description="Milliseconds an entry must sit unacknowledged in another consumer's "
        "pending list before this one reclaims it with XAUTOCLAIM. It must exceed the "
        "longest time a live worker may hold an entry (`pending_bound_seconds`: two batches, "
        "the one written and the one read ahead, each with all its retries and timeouts), "
        "or live batches are stolen; a smaller value is refused at load naming the fields. "
        "Default: that bound plus 10 s, at least 60 s (about 9.5 min with the default "
        "timeouts): the time after which a crashed consumer's entries are taken over.",
    )
    max_deliveries: int = Field(
        default=10,
        ge=1,
        description="Deliveries after which an entry that still fails is dead-lettered "
        "instead of being retried again (default 10).",
    )
    max_dead_letters: int = Field(
        default=100_000,
        ge=1,
        description="Entries the stream's dead-letter stream may hold (default 100,000; size "
        "it to Redis memory: a dead letter is its record plus ~200 bytes). It is never "
        "trimmed: past the bound, entries that should be dead-lettered stay pending, the "
        "worker stops reading the stream (unready, saying why; counted in "
        "`*_dead_letter_refused_total`; an error log line) and the pipeline backs up until "
        "dead letters are replayed or purged with `killkrill dlq`.",
    )

    heartbeat_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Seconds between two heartbeats the worker writes to Redis (what it "
        "delivered, its last sink success and error; read by `killkrill status` and the "
        "operator). A worker silent for six beats counts as gone. Default 5.",
    )
    stop_timeout: float = Field(
        default=20.0,
        gt=0,
        description="Seconds a stopping worker (SIGTERM) waits for its batches in flight to "
        "finish (default 20: keep it below the pod's terminationGracePeriodSeconds). Past "
        "it they are cancelled, left pending in Redis for another worker, and what each task "
        "was waiting for is logged.",
    )


class RetrySettings(_Group):
    """Retries of retryable sink failures within one batch: exponential backoff, jitter, cap.

    The delay before attempt ``n`` (1-based, after the first) is
    ``min(max_backoff, initial_backoff * multiplier ** (n - 1))``, scaled by a random
    factor in ``[1 - jitter, 1]``. After ``max_retries`` retries the items stay pending
    (not acknowledged) and come back on a later delivery.
    """

    max_retries: int = Field(
        default=3, ge=0, description="Retries per batch after the first attempt (default 3)."
    )
    initial_backoff: float = Field(
        default=0.2, ge=0, description="Seconds before the first retry (default 0.2)."
    )
    max_backoff: float = Field(
        default=10.0, ge=0, description="Upper bound of one wait, in seconds (default 10)."
    )
    multiplier: float = Field(
        default=2.0, ge=1, description="Growth of the wait from one retry to the next (2)."
    )
    jitter: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Fraction of each wait that is random (default 0.5), so replicas that "
        "failed together do not retry together.",
    )

    def backoff(self) -> Backoff:
        """The schedule of these settings."""
        return Backoff(
            base=self.initial_backoff,
            factor=self.multiplier,
            cap=self.max_backoff,
            jitter=self.jitter,
        )


def pending_bound_seconds(
    retry: RetrySettings, *, attempt_seconds: float, redis_seconds: float
) -> float:
    """Longest time (s) a live worker may hold an entry pending: two batches (the one being
    written, then the one read ahead meanwhile), each up to ``max_retries + 1`` attempts of
    ``attempt_seconds`` (the sink's timeout) plus a Redis command of ``redis_seconds`` (its
    acknowledgement), and the backoff waits between them at their longest."""
    attempts = retry.max_retries + 1
    batch = attempts * (attempt_seconds + redis_seconds) + retry.backoff().total(retry.max_retries)
    return 2 * batch


def _derived(consumer: ConsumerSettings, **values: int) -> ConsumerSettings:
    """``consumer`` with ``values`` filled in as derived, not set: they stay out of the
    fields set (a dump with ``exclude_unset`` leaves them out, so whoever loads that dump
    derives them again from its own timeouts)."""
    copy = consumer.model_copy(update=values)
    copy.__pydantic_fields_set__.difference_update(values)
    return copy


def _check_consumer(
    consumer: ConsumerSettings,
    redis: RedisSettings,
    retry: RetrySettings,
    *,
    attempt_seconds: float,
    attempt_fields: str,
) -> ConsumerSettings:
    """``consumer`` with ``claim_idle_ms`` derived from :func:`pending_bound_seconds` (when
    not set), or the error of one set below it; ``block_ms`` derived or checked likewise,
    so that a blocking read ends before Redis's timeout."""
    bound_seconds = pending_bound_seconds(
        retry, attempt_seconds=attempt_seconds, redis_seconds=redis.socket_timeout
    )
    half_timeout_ms = int(redis.socket_timeout * 500)
    if "block_ms" not in consumer.model_fields_set and consumer.block_ms > half_timeout_ms:
        consumer = _derived(consumer, block_ms=half_timeout_ms)
    if consumer.block_ms >= redis.socket_timeout * 1000:
        raise ValueError(
            f"consumer.block_ms ({consumer.block_ms} ms) must be below redis.socket_timeout "
            f"({redis.socket_timeout:g} s), or every wait for new entries times out as if "
            "Redis were down; lower consumer.block_ms or raise redis.socket_timeout"
        )
    floor_ms = math.ceil(bound_seconds * 1000)
    if "claim_idle_ms" not in consumer.model_fields_set:
        derived = max(60_000, floor_ms + 10_000)
        return _derived(consumer, claim_idle_ms=derived)
    if consumer.claim_idle_ms <= floor_ms:
        raise ValueError(
            f"consumer.claim_idle_ms ({consumer.claim_idle_ms} ms) must exceed {floor_ms} ms, "
            f"the longest a live worker may hold a batch: 2 x ((retry.max_retries + 1) x "
            f"({attempt_fields} + redis.socket_timeout) + the backoff waits of retry."
            "initial_backoff/multiplier/max_backoff); otherwise other consumers take over "
            "batches still being written. Raise consumer.claim_idle_ms, or lower those "
            "timeouts or retries"
        )
    return consumer


class LogTransformSettings(_Group):
    """What the log worker does to each record between parsing and indexing."""

    environment: str = Field(
        default="development",
        description="Value of the `environment` field added to every document "
        "(e.g. production, staging). Env: KILLKRILL_TRANSFORM__ENVIRONMENT.",
    )
    version: str = Field(
        default=__version__,
        description="Value of the `version` field added to every document: the version of "
        "what produced the logs or of the pipeline. Default: KillKrill's own version.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Static fields added to every document, name -> value (e.g. `{cluster: "
        "eu-1}`); a record's own field of that name wins. Default: none.",
    )
    ecs: bool = Field(
        default=False,
        description="Write documents in the Elastic Common Schema shape: `log.level`, "
        "`service.name`/`environment`/`version`, `event.ingested`, `ecs.version`; the "
        "record's other fields stay as they are. Default off (the record's own shape).",
    )
    drop_fields: list[str] = Field(
        default_factory=list,
        description="Top-level fields removed from every record before indexing (e.g. "
        "`password`). Required fields cannot be dropped.",
    )
    rename_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Top-level fields renamed before indexing, old name -> new name "
        "(e.g. `{msg_id: message_id}`). Required fields cannot be renamed.",
    )

    @model_validator(mode="after")
    def _check_fields(self) -> LogTransformSettings:
        protected = {"timestamp", "service", "level", "message", "@timestamp"}
        touched = set(self.drop_fields) | set(self.rename_fields) | set(self.rename_fields.values())
        bad = sorted(touched & protected)
        if bad:
            raise ValueError(f"fields {', '.join(bad)} are required and cannot be dropped/renamed")
        bad = sorted(set(self.fields) & (protected | {"environment", "version", "processed_at"}))
        if bad:
            raise ValueError(f"fields {', '.join(bad)} are set by the worker; pick other names")
        if any(not name or name.startswith("_") for name in self.rename_fields.values()):
            raise ValueError("renamed fields must be non-empty and not start with '_'")
        return self


class OpsSettings(_Group):
    """The operations HTTP port of a long-running worker."""

    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(
        default=9102,
        ge=0,
        le=65535,
        description="TCP port for /healthz, /readyz and /metrics (default 9102; 0 picks a free "
        "port, reported in the start log line).",
    )


class LogWorkerSettings(ProcessSettings):
    """Everything one log worker process reads."""

    config_section: ClassVar[str] = "log_worker"
    well_known_env: ClassVar[tuple[tuple[str, str], ...]] = (
        ("REDIS_URL", "redis.url"),
        ("ELASTICSEARCH_URL", "elasticsearch.url"),
    )
    label: ClassVar[str] = "log worker"

    pipeline: str = Field(
        default="default",
        description="Pipeline name: prefixes stream keys (`<pipeline>:logs-stream`) and is "
        "part of every document `_id`.",
    )
    redis: RedisSettings = Field(default_factory=RedisSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    log_stream: str = Field(
        default="logs",
        min_length=1,
        description="Name of the pipeline's log stream, read as `<name>-stream` (prefixed "
        "`<pipeline>:` but for the default pipeline). Default `logs`.",
    )
    stream: str | None = Field(
        default=None,
        min_length=1,
        description="Stream key to read, overriding `log_stream` (e.g. `my-logs`). Default: "
        "the pipeline's log stream (`logs-stream`).",
    )
    dead_letter_stream: str | None = Field(
        default=None,
        min_length=1,
        description="Where entries that can never succeed go. Default `<stream>:dead-letter`.",
    )
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    transform: LogTransformSettings = Field(default_factory=LogTransformSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    install_template: bool = Field(
        default=True,
        description="Install (or update) the index template `killkrill-<index_prefix>` at "
        "start. Turn off when the template is managed elsewhere.",
    )
    number_of_replicas: int | None = Field(
        default=None,
        ge=0,
        description="`index.number_of_replicas` in the template; unset keeps the cluster's "
        "default (1). Use 0 on a single-node cluster to keep it green.",
    )

    @model_validator(mode="after")
    def _claim_idle(self) -> LogWorkerSettings:
        # One attempt: waiting for an in-flight slot (another lane's request) and the request.
        self.consumer = _check_consumer(
            self.consumer,
            self.redis,
            self.retry,
            attempt_seconds=2 * self.elasticsearch.request_timeout,
            attempt_fields="2 x elasticsearch.request_timeout",
        )
        return self

    @field_validator("elasticsearch")
    @classmethod
    def _index_prefix(cls, value: ElasticsearchSettings) -> ElasticsearchSettings:
        prefix = value.index_prefix
        if not prefix or prefix != prefix.lower() or any(c in prefix for c in ' "*\\<|,>/?#:'):
            raise ValueError(
                "elasticsearch.index_prefix must be a lowercase index name without "
                'spaces or any of " * \\ < | , > / ? # :'
            )
        return value


# --- metrics worker ---------------------------------------------------------------------------


class AggregationSettings(_Group):
    """How the metrics worker folds samples into PostgreSQL buckets."""

    bucket_seconds: int = Field(
        default=60,
        ge=1,
        le=86_400,
        description="Width of an aggregation bucket in seconds (default 60). Buckets start "
        "at multiples of it since the epoch, by each sample's own timestamp.",
    )
    max_series_per_metric: int = Field(
        default=10_000,
        ge=1,
        description="Cardinality cap: distinct label sets one metric name may have (default "
        "10,000). Samples that would open a series beyond it are dead-lettered as a label "
        "explosion; existing series keep aggregating.",
    )
    statement_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one PostgreSQL transaction's statement may run (default 10; a "
        "batch of 1,000 samples takes milliseconds) before it is cancelled and the batch "
        "retried. `consumer.claim_idle_ms` is derived from it.",
    )
    series_cache_size: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Series (name + label set) one worker process remembers, least recently "
        "used forgotten first (default 100,000; about 1 KiB each, so ~100 MiB when full). "
        "A remembered series needs no cardinality lookup and no label encoding; one "
        "forgotten is looked up again (slower, as exact). Keep it above the number of "
        "series that receive samples within a few minutes.",
    )
    parse_cache_size: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Entries of each memo of the sample parser (metric names and label "
        "names already validated, calendar seconds of timestamps already converted), least "
        "recently used forgotten first (default 10,000 each; a few MiB at most).",
    )


class ExpositionSettings(_Group):
    """What ``/metrics`` of the metrics worker shows of the aggregates."""

    enabled: bool = Field(
        default=True, description="Expose the aggregates at /metrics (default on)."
    )
    max_age_seconds: int = Field(
        default=900,
        ge=1,
        description="Series whose newest sample is older than this many seconds are left "
        "out, so stopped series disappear from Prometheus (default 900 s).",
    )
    refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="Seconds between two reads of the aggregates that /metrics serves "
        "(default 5). A scrape never queries PostgreSQL: it gets the newest snapshot, read "
        "by a thread of its own, so keep this below the Prometheus scrape interval. The "
        "snapshot's age is exposed as "
        "killkrill_metrics_worker_exposition_snapshot_age_seconds.",
    )
    query_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds the read of the aggregates may take, lock waits included, "
        "before it is cancelled and counted as a failed refresh (default 5; the query "
        "normally takes milliseconds). Short, so a locked or overloaded table delays the "
        "snapshot, never the worker.",
    )


class RetentionSettings(_Group):
    """Pruning of old aggregates, orphaned series and spent ledger rows by the worker."""

    max_age_seconds: int = Field(
        default=7 * 86_400,
        ge=60,
        description="Buckets that ended more than this many seconds ago are deleted "
        "(default 7 days).",
    )
    interval_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Seconds between pruning rounds of a long-running worker (default 300; "
        "0 turns scheduled pruning off, leaving it to `killkrill db prune`).",
    )


class MetricsWorkerSettings(ProcessSettings):
    """Everything one metrics worker process reads (build it with :meth:`load`)."""

    config_section: ClassVar[str] = "metrics_worker"
    well_known_env: ClassVar[tuple[tuple[str, str], ...]] = (
        ("REDIS_URL", "redis.url"),
        ("DATABASE_URL", "database.url"),
    )
    label: ClassVar[str] = "metrics worker"

    pipeline: str = Field(
        default="default",
        description="Pipeline name: prefixes stream keys (`<pipeline>:metrics-stream`).",
    )
    redis: RedisSettings = Field(default_factory=RedisSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    streams: list[str] = Field(
        default_factory=lambda: ["metrics"],
        min_length=1,
        description="Metric stream names to aggregate, each read as `<name>-stream` with its "
        "own consumer group, concurrently (default: `metrics`, i.e. `metrics-stream`).",
    )
    consumer: ConsumerSettings = Field(default_factory=lambda: ConsumerSettings(batch_size=1000))
    retry: RetrySettings = Field(default_factory=RetrySettings)
    aggregation: AggregationSettings = Field(default_factory=AggregationSettings)
    exposition: ExpositionSettings = Field(default_factory=ExpositionSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    ops: OpsSettings = Field(default_factory=lambda: OpsSettings(port=9103))

    @model_validator(mode="after")
    def _claim_idle(self) -> MetricsWorkerSettings:
        # One attempt: the optimistic transaction and, after a redelivery, the careful one.
        self.consumer = _check_consumer(
            self.consumer,
            self.redis,
            self.retry,
            attempt_seconds=2 * self.aggregation.statement_timeout,
            attempt_fields="2 x aggregation.statement_timeout",
        )
        return self

    @field_validator("streams")
    @classmethod
    def _streams(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not re.fullmatch(r"[A-Za-z0-9_.:-]+", name)]
        if bad:
            raise ValueError(f"stream names {bad} may hold only letters, digits and _ . : -")
        return value
