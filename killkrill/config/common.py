"""Connection settings shared by every component: Redis, Elasticsearch, PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from killkrill.errors import ConfigError

__all__ = ["DatabaseSettings", "ElasticsearchSettings", "RedisSettings", "load_config_file"]


class _Group(BaseModel):
    """Base of every settings group: unknown keys are errors, so typos are caught early."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RedisSettings(_Group):
    """Where the Redis Streams buffer lives."""

    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis URL (redis://[user:password@]host:port/db). Env: REDIS_URL.",
    )
    key_prefix: str = Field(
        default="",
        description=(
            "Prefix of every stream key. Empty for the default pipeline (streams "
            "`logs-stream`, `metrics-stream`); another pipeline uses `<pipeline>:`."
        ),
    )
    socket_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a single Redis command may take before it fails."
    )


class ElasticsearchSettings(_Group):
    """The Elasticsearch cluster the log worker indexes into."""

    url: str = Field(
        default="http://127.0.0.1:9200",
        description="Elasticsearch URL. Env: ELASTICSEARCH_URL.",
    )
    index_prefix: str = Field(
        default="logs",
        description="Documents go to `<index_prefix>-YYYY.MM.DD` by the record's own date.",
    )
    request_timeout: float = Field(
        default=30.0, gt=0, description="Seconds one request (e.g. one `_bulk`) may take."
    )


class DatabaseSettings(_Group):
    """The PostgreSQL database holding metric aggregates."""

    url: str = Field(
        default="postgresql://test:test@127.0.0.1:5432/killkrill_test",
        description="SQLAlchemy/libpq URL. Env: DATABASE_URL (or TEST_DATABASE_URL in tests).",
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
