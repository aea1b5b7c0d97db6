"""Connection settings shared by every component: Redis, Elasticsearch, PostgreSQL."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from killkrill.config.secrets import (
    read_secret_file,
    url_has_credentials,
    url_has_password,
    url_with_password,
)
from killkrill.errors import ConfigError

__all__ = [
    "DatabaseSettings",
    "ElasticsearchSettings",
    "ProcessSettings",
    "RedisSettings",
    "load_config_file",
    "merge_settings",
    "set_dotted",
]

_PIPELINE_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class _Group(BaseModel):
    """Base of every settings group: unknown keys are errors, so typos are caught early.
    A value that fails validation is never echoed in the error (it may be a credential)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)


class RedisSettings(_Group):
    """Where the Redis Streams buffer lives."""

    url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis URL (redis://[user:password@]host:port/db; rediss:// for TLS). A "
        "secret: never logged or shown except redacted (`redis://user:***@host`). "
        "Env: REDIS_URL.",
    )
    key_prefix: str = Field(
        default="",
        description=(
            "Prefix of every stream key. Empty for the default pipeline (streams "
            "`logs-stream`, `metrics-stream`); another pipeline uses `<pipeline>:`."
        ),
    )
    socket_timeout: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a single Redis command may take before it fails (default 5). "
        "Part of the longest time a worker may hold a batch, which a crashed worker's "
        "entries wait out before another takes them over (`consumer.claim_idle_ms`).",
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the Redis (ACL) password (a mounted Secret; read once at "
        "start, never logged), put into `url` then. Default: none (the URL's own, if any). "
        "Env: KILLKRILL_REDIS__PASSWORD_FILE.",
    )
    durability_check: Literal["strict", "warn"] = Field(
        default="strict",
        description="What a process does at start when Redis may lose acknowledged entries "
        "(read with CONFIG GET). `strict` (default): a `maxmemory-policy` other than "
        "`noeviction`, or a CONFIG GET the server refuses, stops the start with the fix. "
        "`warn`: both are warnings, for a managed Redis that forbids CONFIG (check its "
        "settings in its console). AOF off (`appendonly no`) is a warning either way. "
        "Env: KILLKRILL_REDIS__DURABILITY_CHECK.",
    )


class ElasticsearchSettings(_Group):
    """The Elasticsearch cluster the log worker indexes into."""

    url: SecretStr = Field(
        default=SecretStr("http://127.0.0.1:9200"),
        description="Elasticsearch URL (https:// for TLS). Credentials belong in "
        "`api_key_file` or `username` + `password_file`, though `https://user:password@host` "
        "works too. A secret: never logged or shown except redacted. Env: ELASTICSEARCH_URL.",
    )
    index_prefix: str = Field(
        default="logs",
        description="Documents go to `<index_prefix>-YYYY.MM.DD` by the record's own date.",
    )
    request_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds one request (e.g. one `_bulk` of a batch) may take (default 10; "
        "a batch of 500 logs takes well under a second). A timed-out request is retried and "
        "never dead-letters anything; a shorter timeout shortens the failover of a crashed "
        "worker's entries (`consumer.claim_idle_ms` is derived from it).",
    )
    api_key_file: Path | None = Field(
        default=None,
        description="File holding an Elasticsearch API key (sent as `Authorization: ApiKey "
        "...`): the `encoded` value `POST /_security/api_key` answers, or `id:api_key`. A "
        "mounted Secret; read once at start, never logged. Default: none. Env: "
        "KILLKRILL_ELASTICSEARCH__API_KEY_FILE. Not with `username`.",
    )
    username: str | None = Field(
        default=None,
        min_length=1,
        description="User name for HTTP basic auth, with `password_file`. Default: none. Env: "
        "KILLKRILL_ELASTICSEARCH__USERNAME.",
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the password of `username` (a mounted Secret; read once at "
        "start, never logged). Default: none. Env: KILLKRILL_ELASTICSEARCH__PASSWORD_FILE.",
    )
    ca_file: Path | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the cluster's certificate, for an "
        "https:// URL whose certificate the system's CAs do not vouch for (a private CA, "
        "ECK's `<cluster>-es-http-certs-public` Secret). Default: the system's CAs. Env: "
        "KILLKRILL_ELASTICSEARCH__CA_FILE.",
    )
    verify_certs: bool = Field(
        default=True,
        description="Verify the cluster's TLS certificate and host name (default true). "
        "false accepts any certificate, so anyone on the path can read the logs and the "
        "credentials; the worker logs a warning at start. Env: "
        "KILLKRILL_ELASTICSEARCH__VERIFY_CERTS.",
    )

    @model_validator(mode="after")
    def _one_credential(self) -> ElasticsearchSettings:
        if self.api_key_file is not None and (self.username or self.password_file):
            raise ValueError(
                "elasticsearch: give api_key_file or username + password_file, not both"
            )
        if (self.username is None) != (self.password_file is None):
            raise ValueError(
                "elasticsearch: username and password_file go together (basic auth); "
                "give both, or neither"
            )
        if url_has_credentials(self.url) and (self.api_key_file or self.username):
            raise ValueError(
                "elasticsearch: the url holds credentials and api_key_file/username is set "
                "too; keep one (the files)"
            )
        return self


class DatabaseSettings(_Group):
    """The PostgreSQL database holding metric aggregates."""

    url: SecretStr = Field(
        default=SecretStr("postgresql://test:test@127.0.0.1:5432/killkrill_test"),
        description="SQLAlchemy/libpq URL (postgresql://user:password@host:port/db). A secret: "
        "never logged or shown except redacted. Env: DATABASE_URL (or TEST_DATABASE_URL in "
        "tests).",
    )
    password_file: Path | None = Field(
        default=None,
        description="File holding the password of the URL's user (a mounted Secret; read "
        "once at start, never logged), put into `url` then. Default: none. Env: "
        "KILLKRILL_DATABASE__PASSWORD_FILE.",
    )
    pool_size: int = Field(default=5, ge=1, description="Connections kept open per process.")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict; errors name the file and the problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc.strerror}") from exc
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"config file {p} is not valid YAML/JSON: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {p} must hold a mapping at the top, not {type(data).__name__}"
        )
    return data


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted="a.b"``, creating the levels between."""
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def merge_settings(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``top`` recursively (nested dicts merge; other values replace)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = value
    return out


def _env_layer(roots: set[str]) -> dict[str, Any]:
    """``KILLKRILL_A__B=v`` as ``{"a": {"b": "v"}}`` for top-level names in ``roots``
    (values stay strings; pydantic casts them)."""
    out: dict[str, Any] = {}
    for key, value in os.environ.items():
        if not key.startswith("KILLKRILL_"):
            continue
        path = key[len("KILLKRILL_") :].lower().split("__")
        if path[0] in roots:
            set_dotted(out, ".".join(path), value)
    return out


class ProcessSettings(_Group):
    """Root of one process's settings (receivers, log worker, metrics worker).

    :meth:`load` layers, lowest first: field defaults < the config file (its
    ``config_section`` if present) < ``KILLKRILL_*`` env (nested with ``__``) < the well-known
    variables in ``well_known_env`` (``REDIS_URL`` ...) < ``overrides`` (dotted keys from
    flags; ``None`` values are ignored). Every invalid setting is reported at once.
    """

    config_section: ClassVar[str]
    """Section of a shared config file holding this process's settings."""
    well_known_env: ClassVar[tuple[tuple[str, str], ...]] = (("REDIS_URL", "redis.url"),)
    """``(VARIABLE, dotted.path)`` pairs read from the environment."""
    label: ClassVar[str] = "process"
    """How error messages name these settings."""

    pipeline: str = Field(
        default="default",
        description="Pipeline name (a DNS label): a non-default one prefixes every stream key "
        "with `<pipeline>:`.",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info",
        description="Lowest level of the JSON log lines written to stdout (debug, info, "
        "warning, error; any case). Flag: --log-level. Env: KILLKRILL_LOG_LEVEL.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("pipeline")
    @classmethod
    def _pipeline(cls, value: str) -> str:
        if not _PIPELINE_RE.fullmatch(value):
            raise ValueError("must be a DNS label (lowercase letters, digits, '-')")
        return value

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        base: Mapping[str, Any] | None = None,
    ) -> Self:
        """Build the settings from every layer (see the class docstring); ``base`` stands
        in for the config file's section (e.g. what a ``Pipeline`` derives)."""
        data: dict[str, Any] = dict(base or {})
        if config_file is not None:
            raw = load_config_file(config_file)
            section = raw.get(cls.config_section, raw)
            if not isinstance(section, dict):
                raise ConfigError(f"{config_file}: `{cls.config_section}` must be a mapping")
            data = section
        data = merge_settings(data, _env_layer(set(cls.model_fields)))
        for var, path in cls.well_known_env:
            if os.environ.get(var):
                set_dotted(data, path, os.environ[var])
        for dotted, value in (overrides or {}).items():
            if value is not None:
                set_dotted(data, dotted, value)
        return cls.validate_settings(data).with_password_files()

    def with_password_files(self) -> Self:
        """These settings with each ``password_file`` (Redis, PostgreSQL) read and put into
        its URL: what a process does once at start (:meth:`load`). Settings derived for
        someone else (the operator's ConfigMap) keep the paths."""
        update: dict[str, Any] = {}
        for name in ("redis", "database"):
            group = getattr(self, name, None)
            path = getattr(group, "password_file", None)
            if group is None or path is None:
                continue
            if url_has_password(group.url):
                raise ConfigError(
                    f"{name}.url holds a password and {name}.password_file is set too; keep "
                    "one (the file)"
                )
            secret = read_secret_file(path, f"{name}.password_file")
            update[name] = group.model_copy(update={"url": url_with_password(group.url, secret)})
        return self.model_copy(update=update) if update else self

    @classmethod
    def validate_settings(cls, data: Mapping[str, Any]) -> Self:
        """Validate ``data``; raise :class:`ConfigError` listing every invalid setting."""
        try:
            return cls.model_validate(data)
        except PydanticValidationError as exc:
            lines = [
                f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                if err["loc"]
                else f"  {err['msg'].removeprefix('Value error, ')}"  # a check across fields
                for err in exc.errors()
            ]
            raise ConfigError(f"invalid {cls.label} settings:\n" + "\n".join(lines)) from None
