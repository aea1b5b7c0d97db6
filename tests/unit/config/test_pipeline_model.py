"""The Pipeline document: loads, round-trips, derives every process's settings, and says
what is wrong with a bad one by field path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from killkrill.config import LogWorkerSettings, MetricsWorkerSettings, ReceiverSettings
from killkrill.config.pipeline import (
    API_VERSION,
    SECRETS_ROOT,
    Pipeline,
    component_settings,
    load_pipeline,
    parse_pipeline,
)
from killkrill.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "pipeline.yaml"


def test_the_example_loads_and_round_trips() -> None:
    pipeline = load_pipeline(EXAMPLE)
    assert pipeline.name == "example"
    assert pipeline.api_version == API_VERSION
    again = parse_pipeline(yaml.safe_load(yaml.safe_dump(pipeline.document())))
    assert again == pipeline
    # camelCase on the wire, snake_case in Python
    wire = pipeline.document()["spec"]
    assert wire["elasticsearch"]["indexPrefix"] == "logs-example"
    assert pipeline.spec.elasticsearch.index_prefix == "logs-example"


def test_an_empty_spec_is_valid_and_keeps_the_local_defaults() -> None:
    pipeline = parse_pipeline({"apiVersion": API_VERSION, "kind": "Pipeline", "spec": {}})
    settings = component_settings(pipeline)
    assert pipeline.name == "default"
    assert settings.receiver == ReceiverSettings.validate_settings({"syslog": {"udp_port": 5140}})
    assert settings.log_worker.consumer == LogWorkerSettings().consumer
    assert settings.log_worker.elasticsearch.index_prefix == "logs"
    assert settings.metrics_worker.consumer == MetricsWorkerSettings().consumer
    assert settings.metrics_worker.streams == ["metrics"]


def test_settings_are_derived_from_the_spec() -> None:
    pipeline = load_pipeline(EXAMPLE)
    s = component_settings(pipeline, secrets_dir=Path("/s"))
    assert s.receiver.pipeline == s.log_worker.pipeline == s.metrics_worker.pipeline == "example"
    assert s.receiver.streams == ["logs", "metrics", "billing"]
    assert s.receiver.http.port == 8081
    assert s.receiver.syslog.port == 5141
    assert s.receiver.auth.enabled is False
    assert s.log_worker.consumer.batch_size == 500
    assert s.log_worker.transform.fields == {"cluster": "local"}
    assert s.log_worker.number_of_replicas == 0
    assert s.metrics_worker.streams == ["metrics", "billing"]
    assert s.metrics_worker.consumer.batch_size == 1000


def test_the_lean_syslog_record_is_chosen_in_the_spec() -> None:
    lean = parse_pipeline({"spec": {"receivers": {"syslog": {"keepRaw": False}}}})
    assert component_settings(lean).receiver.syslog.keep_raw is False
    assert component_settings(parse_pipeline({"spec": {}})).receiver.syslog.keep_raw is True


def test_secret_refs_become_file_paths_never_values() -> None:
    doc = {
        "spec": {
            "redis": {"secretRef": {"name": "redis", "key": "password"}},
            "postgres": {"secretRef": {"name": "pg", "key": "pw"}},
            "elasticsearch": {
                "username": "writer",
                "secretRef": {"name": "es", "key": "password"},
                "caSecretRef": {"name": "es-ca", "key": "ca.crt"},
            },
            "receivers": {
                "http": {"auth": {"secretRef": {"name": "keys", "key": "keys.yaml"}}},
                "syslog": {"tls": {"enabled": True, "secretRef": {"name": "syslog-tls"}}},
            },
        }
    }
    s = component_settings(parse_pipeline(doc))
    assert s.log_worker.redis.password_file == SECRETS_ROOT / "redis" / "password"
    assert s.metrics_worker.database.password_file == SECRETS_ROOT / "pg" / "pw"
    assert s.log_worker.elasticsearch.password_file == SECRETS_ROOT / "es" / "password"
    assert s.log_worker.elasticsearch.ca_file == SECRETS_ROOT / "es-ca" / "ca.crt"
    assert s.receiver.auth.keys_file == SECRETS_ROOT / "keys" / "keys.yaml"
    assert s.receiver.syslog.tls_cert == SECRETS_ROOT / "syslog-tls" / "tls.crt"
    text = yaml.safe_dump(s.config_document())
    assert "/var/run/secrets/killkrill/redis/password" in text


def test_an_api_key_secret_without_username_is_the_api_key() -> None:
    doc = {"spec": {"elasticsearch": {"secretRef": {"name": "es", "key": "api-key"}}}}
    s = component_settings(parse_pipeline(doc))
    assert s.log_worker.elasticsearch.api_key_file == SECRETS_ROOT / "es" / "api-key"


def test_every_error_is_reported_with_its_field_path() -> None:
    doc = {
        "apiVersion": API_VERSION,
        "kind": "Pipeline",
        "metadata": {"name": "Bad_Name"},
        "spec": {
            "redis": {"url": "redis://:hunter2@redis:6379/0"},
            "logWorker": {"batchSize": 0, "autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
            "receivers": {"syslog": {"tls": {"enabled": True}}},
            "streams": {"partitions": 3},
            "typo": 1,
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_pipeline(doc)
    text = str(info.value)
    for line in (
        "metadata.name: must be 1-40 lowercase letters, digits and '-', starting with a letter",
        "spec.redis.url: must not hold a password",
        "spec.logWorker.batchSize: Input should be greater than or equal to 1",
        "spec.logWorker.autoscaling.maxReplicas: must be >= minReplicas",
        "spec.receivers.syslog: tls.secretRef is required when tls.enabled is true",
        "spec.streams.partitions: Input should be less than or equal to 1",
        "spec.typo: Extra inputs are not permitted",
    ):
        assert line in text
    assert "hunter2" not in text  # a value that fails validation is never echoed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: Pipeline\napiVersion: v1\n", "apiVersion"),
        ("kind: ConfigMap\n", "expected one document of kind: Pipeline"),
        ("[1, 2", "is not valid YAML"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_pipeline(path)


def test_status_written_by_the_operator_is_ignored_when_loading() -> None:
    pipeline = Pipeline.model_validate(
        {"kind": "Pipeline", "metadata": {"name": "p", "uid": "x"}, "status": {"a": 1}}
    )
    assert pipeline.name == "p"


def test_derived_claim_idle_is_left_out_of_the_config_document() -> None:
    """A derived value is derived again by whoever loads the document (from its own
    timeouts), so the ConfigMap never pins it."""
    doc = component_settings(Pipeline()).config_document()
    assert "claim_idle_ms" not in doc["log_worker"]["consumer"]
    assert "block_ms" not in doc["log_worker"]["consumer"]
    loaded = LogWorkerSettings.load(base=doc["log_worker"])
    assert loaded.consumer.claim_idle_ms == LogWorkerSettings().consumer.claim_idle_ms
