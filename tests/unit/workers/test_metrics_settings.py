"""The seed's flat config dict and the settings model of the metrics worker."""

from __future__ import annotations

import pytest

from killkrill.config import MetricsWorkerSettings
from killkrill.errors import ConfigError
from killkrill.workers.metrics.settings import settings_from_seed


def test_seed_dict_with_host_port_db() -> None:
    s = settings_from_seed(
        {
            "redis_url": "localhost",
            "redis_port": 6380,
            "redis_db": 2,
            "database_url": "postgresql://u:p@db/x",
            "batch_size": 10,
            "bucket_seconds": 30,
            "timeout": 5,
        }
    )
    assert s.redis.url.get_secret_value() == "redis://localhost:6380/2"
    assert s.database.url.get_secret_value() == "postgresql://u:p@db/x"
    assert s.consumer.batch_size == 10
    assert s.aggregation.bucket_seconds == 30
    assert s.redis.socket_timeout == 5
    assert s.aggregation.statement_timeout == 5
    assert s.streams == ["metrics"]


def test_full_redis_url_is_kept() -> None:
    assert (
        settings_from_seed({"redis_url": "redis://r:1/3"}).redis.url.get_secret_value()
        == "redis://r:1/3"
    )


def test_unknown_keys_and_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown metrics worker setting"):
        settings_from_seed({"bucket_secs": 5})
    with pytest.raises(ConfigError, match="bucket_seconds"):
        settings_from_seed({"bucket_seconds": 0})


def test_load_layers_env_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILLKRILL_AGGREGATION__BUCKET_SECONDS", "10")
    monkeypatch.setenv("DATABASE_URL", "postgresql://env/db")
    s = MetricsWorkerSettings.load(overrides={"ops.port": 1234, "streams": ["a", "b"]})
    assert (s.aggregation.bucket_seconds, s.database.url.get_secret_value()) == (
        10,
        "postgresql://env/db",
    )
    assert (s.ops.port, s.streams) == (1234, ["a", "b"])
