"""Settings of the receivers: streams, HTTP API, syslog server, record limits, backpressure,
auth and the ops port.

Each group is a plain pydantic model (so the ``Pipeline`` CRD can embed it);
:class:`ReceiverSettings` is the root a receiver process loads with
:meth:`ReceiverSettings.load` (defaults < config file < ``KILLKRILL_*`` env < ``REDIS_URL``
< flags). Nested env names use ``__``: ``KILLKRILL_HTTP__PORT=8080``,
``KILLKRILL_AUTH__ENABLED=false``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import tzinfo
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from killkrill.config.common import ProcessSettings, RedisSettings, _Group, load_config_file
from killkrill.config.workers import OpsSettings
from killkrill.errors import ConfigError

__all__ = [
    "LOG_STREAM",
    "MAX_APPEND_BATCH",
    "ApiKey",
    "AuthSettings",
    "BackpressureSettings",
    "HttpReceiverSettings",
    "ReceiverSettings",
    "RecordLimitSettings",
    "SyslogSettings",
    "hash_api_key",
    "undeclared_key_streams",
]

Scope = Literal["logs", "metrics", "remote_write"]
ALL_SCOPES: tuple[Scope, ...] = ("logs", "metrics", "remote_write")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_STREAM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")

MAX_APPEND_BATCH = 10_000
"""Records one append writes atomically (one Redis script call, ~10 ms of Redis time):
the bound of every batch setting, so a 2xx (or the next syslog read) always means the
whole batch (see :mod:`killkrill.streams.append`)."""

LOG_STREAM = "logs"
"""Name of the one log stream (``logs-stream``) in ``streams``; every other name there is a
metric stream."""


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest stored for an API key (``sha256:`` values in config)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKey(_Group):
    """One client's key. Give the plain ``key`` (hashed at load, never kept) or its
    ``sha256`` hex digest (``printf %s KEY | sha256sum``)."""

    name: str = Field(min_length=1, description="Who the key belongs to (the source); logged.")
    key: SecretStr | None = Field(
        default=None, description="The key itself; hashed at load and then dropped."
    )
    sha256: str | None = Field(
        default=None, description="SHA-256 hex digest of the key (64 lowercase hex digits)."
    )
    scopes: list[Scope] = Field(
        default_factory=lambda: list(ALL_SCOPES),
        description="Endpoints the key may post to: logs, metrics, remote_write. Default: all.",
    )
    streams: list[str] | None = Field(
        default=None,
        description="Streams the key may write (names from the receiver's `streams`); 403 "
        "for any other. Default: every declared stream.",
    )

    @model_validator(mode="after")
    def _hash(self) -> ApiKey:
        if self.key is not None:
            digest = hash_api_key(self.key.get_secret_value())
            if self.sha256 is not None and self.sha256 != digest:
                raise ValueError(f"api key {self.name}: key and sha256 disagree; give one")
            self.sha256 = digest
            self.key = None
        if self.sha256 is None:
            raise ValueError(f"api key {self.name}: give `key` or `sha256`")
        self.sha256 = self.sha256.lower()
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"api key {self.name}: sha256 must be 64 hex digits")
        return self


class AuthSettings(_Group):
    """Who may post. Keys come from ``keys`` and from ``keys_file`` (a mounted Secret)."""

    enabled: bool = Field(
        default=True,
        description="Require an API key (``Authorization: Bearer KEY`` or ``X-API-Key: KEY``)"
        " on ingest endpoints. Turn off only for local runs; a warning is logged at start.",
    )
    keys: list[ApiKey] = Field(default_factory=list, description="Keys allowed in.")
    keys_file: Path | None = Field(
        default=None,
        description="YAML/JSON file holding `keys: [...]` (same shape as `keys`), e.g. a "
        "Kubernetes Secret mounted as a file. Read at start and again whenever it changes "
        "(see `reload_interval`) or the process gets SIGHUP; a file that no longer reads "
        "keeps the previous keys (and logs an error).",
    )
    reload_interval: float = Field(
        default=10.0,
        ge=0,
        description="Seconds between checks of `keys_file` for a change (default 10; a "
        "mounted Secret is updated within about a minute). 0: re-read only on SIGHUP.",
    )

    def all_keys(self) -> list[ApiKey]:
        """``keys`` plus those in ``keys_file``; raises ConfigError naming a bad file."""
        keys = list(self.keys)
        if self.keys_file is not None:
            items: Any = load_config_file(self.keys_file).get("keys")
            if not isinstance(items, list):
                raise ConfigError(f"{self.keys_file}: expected a list of keys under `keys`")
            try:
                keys.extend(ApiKey.model_validate(item) for item in items)
            except PydanticValidationError as exc:
                raise ConfigError(f"{self.keys_file}: invalid key entry: {exc}") from exc
        return keys


def undeclared_key_streams(keys: list[ApiKey], declared: list[str]) -> str | None:
    """What is wrong when keys name streams that are not declared (a typo would otherwise
    lock the key's owner out without a word), or ``None``."""
    known = set(declared)
    bad = [
        f"{key.name}: {', '.join(sorted(set(key.streams) - known))}"
        for key in keys
        if key.streams is not None and not set(key.streams) <= known
    ]
    if not bad:
        return None
    return (
        f"api keys name streams that are not declared ({'; '.join(bad)}); declared: "
        f"{', '.join(declared)} (streams)"
    )


class RecordLimitSettings(_Group):
    """Per-record bounds, so one client cannot fill Redis or break a sink."""

    max_record_bytes: int = Field(
        default=1_048_576, ge=64, description="Bytes of one record as JSON (default 1 MiB)."
    )
    max_message_length: int = Field(
        default=262_144, ge=1, description="Characters in a log `message` (default 256 Ki)."
    )
    max_service_length: int = Field(
        default=256, ge=1, description="Characters in a log `service` (default 256)."
    )
    max_fields: int = Field(
        default=256, ge=4, description="Top-level fields of a log record (default 256)."
    )
    max_name_length: int = Field(
        default=512, ge=1, description="Characters in a metric name (default 512)."
    )
    max_labels: int = Field(default=64, ge=0, description="Labels on a sample (default 64).")
    max_label_value_length: int = Field(
        default=4096, ge=1, description="Characters in one label value (default 4096)."
    )
    max_future_seconds: float | None = Field(
        default=86_400,
        ge=0,
        description="Records dated more than this many seconds after the receiver's clock "
        "are refused (default 86400 = 1 day; null: no bound), so a sender's wrong clock does "
        "not create far-future daily indices or pin the newest metrics bucket.",
    )
    max_past_seconds: float | None = Field(
        default=None,
        gt=0,
        description="Records dated more than this many seconds before the receiver's clock "
        "are refused. Default null (off): backfills and replays of old data are accepted.",
    )


class BackpressureSettings(_Group):
    """When to push back instead of growing the stream (streams are never trimmed)."""

    max_backlog: int = Field(
        default=1_000_000,
        ge=1,
        description="Unprocessed entries a stream may hold before the receiver answers 429 "
        "(HTTP) or stops reading (TCP syslog). Size it to Redis memory: ~1 KB per entry. A "
        "full backlog does not make the receiver unready: it keeps answering 429 (reported "
        "in /readyz and killkrill_receiver_stream_backlog).",
    )
    retry_after: float = Field(
        default=1.0, gt=0, description="Seconds clients are told to wait (Retry-After)."
    )
    remote_write_status: Literal[429, 503] = Field(
        default=503,
        description="Status for remote_write under backpressure. 503 by default because "
        "Prometheus retries 5xx always but 429 only with `retry_on_http_429`.",
    )


class HttpReceiverSettings(_Group):
    """The HTTP ingest API."""

    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="TCP port (default 8080).")
    max_body_bytes: int = Field(
        default=10 * 1_048_576,
        ge=1024,
        description="Request body as sent (compressed or not), in bytes; 413 above (10 MiB).",
    )
    max_decompressed_bytes: int = Field(
        default=64 * 1_048_576,
        ge=1024,
        description="Body after gzip/snappy decompression, in bytes; 413 above (64 MiB). "
        "Guards against compression bombs.",
    )
    max_batch_records: int = Field(
        default=MAX_APPEND_BATCH,
        ge=1,
        le=MAX_APPEND_BATCH,
        description="Records in one logs/metrics request; 413 above (default and most "
        "10,000: what Redis appends atomically, so a 2xx always means every record). A "
        "remote_write request above it is split into appends of this size instead.",
    )
    max_errors_reported: int = Field(
        default=100, ge=1, description="Per-record errors listed in one response (100)."
    )
    max_concurrent_requests: int = Field(
        default=64,
        ge=1,
        description="Ingest requests handled at once (default 64); more are answered 429 "
        "(remote_write: `backpressure.remote_write_status`) with Retry-After before their "
        "body is read. With the body limits it bounds request memory: at most this many "
        "times (max_body_bytes + max_decompressed_bytes).",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a client may take to send a request's headers, counted from "
        "the connection (or, on a kept-alive one, from the request's first byte); past it the "
        "connection is closed with 408 (slow-loris guard). Default 10.",
    )
    body_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds the whole body of a request may take to arrive; past it the "
        "answer is 408 and nothing is written (default 60: 10 MiB over ~1.5 Mbit/s).",
    )
    keep_alive_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds an idle kept-alive connection stays open between requests "
        "(default 5). Behind a load balancer, set it above the balancer's idle timeout.",
    )
    remote_write: bool = Field(
        default=True,
        description="Accept Prometheus remote_write at POST /api/v1/write (default on; off: "
        "404 there).",
    )
    expose_docs_and_metrics: bool = Field(
        default=True,
        description="Also serve /docs, /openapi.json and /metrics on the ingest port (default "
        "on, for local runs). The ops port always serves them; turn this off where shippers "
        "reach the ingest port (the chart does).",
    )


class SyslogSettings(_Group):
    """The syslog server (RFC 5424 and RFC 3164 over UDP, TCP and TLS)."""

    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(
        default=5140, ge=0, le=65535, description="UDP and TCP port (5140: no root needed)."
    )
    udp_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="UDP port when it differs from `port` (default: `port`).",
    )
    udp: bool = Field(default=True, description="Listen on UDP.")
    tcp: bool = Field(default=True, description="Listen on TCP (octet-counted or LF framing).")
    tls_port: int | None = Field(
        default=None, ge=0, le=65535, description="TCP port for TLS (RFC 5425); off if unset."
    )
    tls_cert: Path | None = Field(default=None, description="PEM certificate for TLS.")
    tls_key: Path | None = Field(default=None, description="PEM private key for TLS.")
    max_frame_bytes: int = Field(
        default=65_536,
        ge=480,
        description="Largest message in bytes; bigger frames are dropped and counted.",
    )
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=MAX_APPEND_BATCH,
        description="Messages appended to Redis in one round trip (default 1000, at most 10,000).",
    )
    udp_queue_bytes: int = Field(
        default=64 * 1_048_576,
        ge=65_536,
        description="Bytes of UDP messages held in memory until Redis has them, each counted "
        "with its bookkeeping (128 bytes); datagrams that do not fit are dropped and counted "
        "(killkrill_receiver_syslog_udp_dropped_total). Default 64 MiB.",
    )
    tcp_buffer_bytes: int = Field(
        default=262_144,
        ge=1024,
        description="Bytes of complete frames read from one TCP/TLS connection and not yet "
        "in Redis; past it the connection is not read until Redis catches up, so TCP flow "
        "control slows the sender. Default 256 KiB. Memory bound: max_connections times "
        "(this + max_frame_bytes + one 256 KiB read).",
    )
    max_connections: int = Field(
        default=1024,
        ge=1,
        description="Open TCP and TLS connections at once (default 1024); a connection past "
        "it is closed at once and counted (killkrill_receiver_syslog_refused_connections).",
    )
    idle_timeout: float = Field(
        default=600.0,
        ge=0,
        description="Seconds a TCP/TLS connection may send nothing before it is closed "
        "(default 600; 0: never). Its frames are written first; rsyslog and syslog-ng "
        "reconnect with their next message.",
    )
    drain_timeout: float = Field(
        default=20.0,
        gt=0,
        description="On SIGTERM, seconds to finish writing the frames already read (TCP and "
        "the UDP queue) while Redis pushes back or is down; what is still unwritten then is "
        "counted (killkrill_receiver_syslog_lost_frames_total) and logged. Default 20: keep it "
        "below the pod's terminationGracePeriodSeconds.",
    )
    default_service: str = Field(
        default="syslog", min_length=1, description="Service of a message without a tag."
    )
    rfc3164_timezone: str = Field(
        default="UTC",
        description="IANA zone (e.g. `Europe/Berlin`) of RFC 3164 timestamps, which carry "
        "none: set it to the senders' local zone. Default UTC.",
    )

    keep_raw: bool = Field(
        default=True,
        description="Keep each message as received in the record's `raw` field (stored, not "
        "indexed). false: the lean record without it (a third smaller for 400-byte "
        "messages), which costs Redis, the log worker and Elasticsearch less per message.",
    )

    @field_validator("rfc3164_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a known IANA time zone (e.g. UTC, Europe/Berlin)"
            ) from None
        return value

    @property
    def rfc3164_zone(self) -> tzinfo:
        """:attr:`rfc3164_timezone` as a ``tzinfo``."""
        return ZoneInfo(self.rfc3164_timezone)

    @model_validator(mode="after")
    def _tls(self) -> SyslogSettings:
        if self.tls_port is not None and (self.tls_cert is None or self.tls_key is None):
            raise ValueError("syslog.tls_port needs syslog.tls_cert and syslog.tls_key")
        return self


class ReceiverSettings(ProcessSettings):
    """Everything one receiver process reads (build it with :meth:`load`)."""

    config_section: ClassVar[str] = "receivers"
    label: ClassVar[str] = "receiver"

    redis: RedisSettings = Field(default_factory=RedisSettings)
    streams: list[str] = Field(
        default_factory=lambda: [LOG_STREAM, "metrics"],
        description="The streams clients may write, each `<name>-stream`: `logs` is the log "
        "stream (POST /api/v1/logs); every other name is a metric stream (POST "
        "/api/v1/metrics and remote_write, `?stream=NAME`; `metrics` is the one used without "
        "it). Any other name is refused (400), so no client writes into another kind's "
        "stream or creates one no worker reads: list the metrics worker's `streams` here. "
        "Default: [logs, metrics]; a comma-separated string is read as a list.",
    )
    log_stream: str = Field(
        default=LOG_STREAM,
        description="Which of `streams` holds logs (POST /api/v1/logs, syslog); every other "
        "one holds metrics. Default `logs`.",
    )
    default_metric_stream: str = Field(
        default="metrics",
        description="The metric stream written without `?stream=` (default `metrics`).",
    )
    http: HttpReceiverSettings = Field(default_factory=HttpReceiverSettings)
    syslog: SyslogSettings = Field(default_factory=SyslogSettings)
    limits: RecordLimitSettings = Field(default_factory=RecordLimitSettings)
    backpressure: BackpressureSettings = Field(default_factory=BackpressureSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    durability: Literal["memory", "fsync"] = Field(
        default="memory",
        description="When a receiver answers 2xx (or reads the next syslog frame): `memory` "
        "(default) once Redis holds the records, which its AOF then persists by its own "
        "`appendfsync` policy (`everysec`: up to a second of acknowledged records can be "
        "lost if the Redis host fails); `fsync` only once Redis confirms them fsynced to its "
        "AOF (WAITAOF 1 0, Redis >= 7.2 with `appendonly yes`, checked at start), at the "
        "cost of waiting for that fsync on every append. Env: KILLKRILL_DURABILITY.",
    )
    fsync_timeout: float = Field(
        default=2.0,
        gt=0,
        description="With `durability: fsync`, seconds to wait for the AOF fsync of an append "
        "(default 2, above `appendfsync everysec`'s second) before answering 503.",
    )
    ops: OpsSettings = Field(
        default_factory=lambda: OpsSettings(port=9140),
        description="The ops port of the receiver process (default 9140): /healthz, "
        "/readyz, /metrics, and for the HTTP API also /docs and /openapi.json.",
    )

    @field_validator("streams", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("streams")
    @classmethod
    def _stream_names(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not _STREAM_NAME.fullmatch(name)]
        if bad:
            raise ValueError(
                f"stream names {bad} may hold only letters, digits and _ . : - (1-100 of them)"
            )
        if len(set(value)) != len(value):
            raise ValueError("a stream is declared twice")
        if not value:
            raise ValueError("declare at least one stream (`logs`, `metrics`, ...)")
        return value

    @property
    def metric_streams(self) -> list[str]:
        """The declared metric streams (every name in ``streams`` but the log stream)."""
        return [name for name in self.streams if name != self.log_stream]

    @model_validator(mode="after")
    def _key_streams(self) -> ReceiverSettings:
        problem = undeclared_key_streams(self.auth.keys, self.streams)
        if problem:
            raise ValueError(f"auth.keys: {problem}")
        return self

    @property
    def append_fsync_timeout(self) -> float | None:
        """Seconds an append waits for its AOF fsync, or None with ``durability: memory``."""
        return self.fsync_timeout if self.durability == "fsync" else None
