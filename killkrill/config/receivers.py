"""Settings of the receivers: HTTP API, syslog server, record limits, backpressure, auth.

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
from killkrill.errors import ConfigError

__all__ = [
    "ApiKey",
    "AuthSettings",
    "BackpressureSettings",
    "HttpReceiverSettings",
    "ReceiverSettings",
    "RecordLimitSettings",
    "SyslogSettings",
    "hash_api_key",
]

Scope = Literal["logs", "metrics", "remote_write"]
ALL_SCOPES: tuple[Scope, ...] = ("logs", "metrics", "remote_write")
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
        "Kubernetes Secret mounted as a file. Read at start.",
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


class BackpressureSettings(_Group):
    """When to push back instead of growing the stream (streams are never trimmed)."""

    max_backlog: int = Field(
        default=1_000_000,
        ge=1,
        description="Unprocessed entries a stream may hold before the receiver answers 429 "
        "(HTTP) or stops reading (TCP syslog). Size it to Redis memory: ~1 KB per entry.",
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
        default=10_000, ge=1, description="Records in one request; 413 above (10,000)."
    )
    max_errors_reported: int = Field(
        default=100, ge=1, description="Per-record errors listed in one response (100)."
    )


class SyslogSettings(_Group):
    """The syslog server (RFC 5424 and RFC 3164 over UDP, TCP and TLS)."""

    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(
        default=5140, ge=0, le=65535, description="UDP and TCP port (5140: no root needed)."
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
        default=1000, ge=1, description="Messages appended to Redis in one round trip."
    )
    udp_queue: int = Field(
        default=100_000,
        ge=1,
        description="UDP messages held while Redis is slow; more are dropped and counted.",
    )
    default_service: str = Field(
        default="syslog", min_length=1, description="Service of a message without a tag."
    )
    rfc3164_timezone: str = Field(
        default="UTC",
        description="IANA zone (e.g. `Europe/Berlin`) of RFC 3164 timestamps, which carry "
        "none: set it to the senders' local zone. Default UTC.",
    )
    ops_port: int = Field(
        default=9140,
        ge=0,
        le=65535,
        description="HTTP port for /healthz, /readyz and /metrics of the syslog process.",
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

    @property
    def append_fsync_timeout(self) -> float | None:
        """Seconds an append waits for its AOF fsync, or None with ``durability: memory``."""
        return self.fsync_timeout if self.durability == "fsync" else None
