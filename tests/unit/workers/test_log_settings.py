"""The seed's flat config, the settings model and the derived names (pure)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from killkrill.config.workers import LogWorkerSettings
from killkrill.errors import ConfigError
from killkrill.workers.logs.settings import LogWorkerNames, settings_from_seed

SEED = {
    "redis_url": "localhost",
    "redis_port": 6380,
    "redis_db": 1,
    "elasticsearch_url": "http://es:9200",
    "elasticsearch_index": "logs-test",
    "batch_size": 10,
    "timeout": 5,
}


def test_seed_config_maps_onto_the_settings() -> None:
    s = settings_from_seed(SEED)
    assert s.redis.url.get_secret_value() == "redis://localhost:6380/1"
    assert s.elasticsearch.url.get_secret_value() == "http://es:9200"
    assert s.elasticsearch.index_prefix == "logs-test"
    assert s.consumer.batch_size == 10
    assert s.elasticsearch.request_timeout == 5
    assert s.redis.socket_timeout == 5


@pytest.mark.parametrize(
    ("extra", "path", "value"),
    [
        ({"redis_url": "redis://h:1/2"}, ("redis", "url"), SecretStr("redis://h:1/2")),
        ({"environment": "prod"}, ("transform", "environment"), "prod"),
        ({"version": "9"}, ("transform", "version"), "9"),
        ({"consumer_group": "g"}, ("consumer", "group"), "g"),
        ({"claim_idle_ms": 200_000}, ("consumer", "claim_idle_ms"), 200_000),
        ({"max_retries": 0}, ("retry", "max_retries"), 0),
        ({"ops_port": 0}, ("ops", "port"), 0),
        ({"drop_fields": ["a"]}, ("transform", "drop_fields"), ["a"]),
    ],
)
def test_optional_seed_keys(extra: dict[str, object], path: tuple[str, str], value: object) -> None:
    s = settings_from_seed({**SEED, **extra})
    assert getattr(getattr(s, path[0]), path[1]) == value


def test_unknown_keys_and_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="batchsize"):
        settings_from_seed({**SEED, "batchsize": 3})
    with pytest.raises(ConfigError) as err:
        settings_from_seed({**SEED, "batch_size": 0, "elasticsearch_index": "Logs*"})
    assert "consumer.batch_size" in str(err.value)  # every error reported at once
    assert "index_prefix" in str(err.value)


def test_default_names() -> None:
    names = LogWorkerNames.from_settings(settings_from_seed(SEED))
    assert names.stream == "logs-stream"
    assert names.dead_letter_stream == "logs-stream:dead-letter"
    assert names.group == "log-worker"
    assert names.consumer  # <host>-<pid>


def test_names_of_another_pipeline_and_overrides() -> None:
    s = settings_from_seed({**SEED, "pipeline": "shop"})
    assert LogWorkerNames.from_settings(s).stream == "shop:logs-stream"
    s = settings_from_seed({**SEED, "stream": "x", "dead_letter_stream": "y", "consumer_name": "c"})
    names = LogWorkerNames.from_settings(s)
    assert (names.stream, names.dead_letter_stream, names.consumer) == ("x", "y", "c")


def test_load_layers_file_env_and_flags(tmp_path, monkeypatch) -> None:
    path = tmp_path / "kk.yaml"
    path.write_text("log_worker:\n  consumer:\n    batch_size: 50\n  pipeline: shop\n")
    monkeypatch.setenv("KILLKRILL_CONSUMER__BATCH_SIZE", "70")
    monkeypatch.setenv("ELASTICSEARCH_URL", "http://from-env:9200")
    monkeypatch.delenv("REDIS_URL", raising=False)
    s = LogWorkerSettings.load(path, overrides={"consumer.name": "n1", "ops.port": None})
    assert s.consumer.batch_size == 70
    assert s.pipeline == "shop"
    assert s.elasticsearch.url.get_secret_value() == "http://from-env:9200"
    assert s.consumer.name == "n1"
    assert s.ops.port == 9102
    with pytest.raises(ConfigError, match="invalid log worker settings"):
        LogWorkerSettings.load(overrides={"pipeline": "Not A Label"})


def test_workers_name_their_streams_as_the_receivers_do() -> None:
    """``redis.key_prefix`` wins over the pipeline's prefix for every component (one
    ``stream_names``): a worker reads what the receivers of its settings write."""
    from killkrill.config import LogWorkerSettings, MetricsWorkerSettings, ReceiverSettings
    from killkrill.streams.names import stream_names
    from killkrill.workers.logs.settings import LogWorkerNames

    layers = {"pipeline": "team-a", "redis": {"key_prefix": "tenant-7:"}}
    receivers = ReceiverSettings.validate_settings(layers)
    written = stream_names(receivers.pipeline, receivers.redis.key_prefix)
    logs = LogWorkerNames.from_settings(LogWorkerSettings.validate_settings(layers))
    assert logs.stream == written.logs == "tenant-7:logs-stream"
    metrics = MetricsWorkerSettings.validate_settings(layers)
    assert stream_names(metrics.pipeline, metrics.redis.key_prefix).metrics == written.metrics
