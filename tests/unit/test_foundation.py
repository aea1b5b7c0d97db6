"""Pure pieces of the foundation: errors, config files, stream names, backoff, dev helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from killkrill.config import RedisSettings, load_config_file
from killkrill.db.engine import normalise_url
from killkrill.dev.base import ServiceStatus
from killkrill.dev.manager import ServiceManager
from killkrill.dev.process import pid_alive, port_open, read_pid, stop_pid, wait_until
from killkrill.errors import (
    ConfigError,
    DevServiceError,
    KillKrillError,
    LogParseError,
    PermanentError,
    RetryableError,
    ServiceUnavailable,
    ValidationError,
)
from killkrill.streams import StreamNames, redis_url
from killkrill.workers.base import BatchResult
from killkrill.workers.retry import Backoff


def test_error_tree_separates_retryable_from_permanent() -> None:
    assert issubclass(LogParseError, ValidationError)
    assert issubclass(ValidationError, PermanentError)
    assert issubclass(ServiceUnavailable, RetryableError)
    assert not issubclass(RetryableError, PermanentError)
    assert all(issubclass(c, KillKrillError) for c in (ConfigError, DevServiceError))
    err = ValidationError("must be a string", field="service", index=2)
    assert str(err) == "record 2: service: must be a string"
    assert ServiceUnavailable("down", delay=3).delay == 3


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("localhost", "redis://localhost:6379/0"),
        ("redis://h:1/2", "redis://h:1/2"),
        ("unix:///tmp/r.sock", "unix:///tmp/r.sock"),
        ("::1", "redis://[::1]:6379/0"),
    ],
)
def test_redis_url_from_host_or_url(given: str, expected: str) -> None:
    assert redis_url(given).get_secret_value() == expected


def test_redis_url_uses_seed_port_and_db() -> None:
    assert redis_url("10.0.0.1", 6380, 3).get_secret_value() == "redis://10.0.0.1:6380/3"


def test_redis_url_carries_the_acl_login_quoted() -> None:
    url = redis_url("h", 1, 2, username="kk", password="p@ss:w/rd")
    assert url.get_secret_value() == "redis://kk:p%40ss%3Aw%2Frd@h:1/2"
    assert "p@ss" not in repr(url)


def test_stream_names_keep_seed_names_and_prefix_other_pipelines() -> None:
    default = StreamNames.for_pipeline("default")
    assert (default.logs, default.metrics, default.named("db_queries")) == (
        "logs-stream",
        "metrics-stream",
        "db_queries-stream",
    )
    other = StreamNames.for_pipeline("payments")
    assert other.logs == "payments:logs-stream"
    assert StreamNames.dead_letter(other.logs) == "payments:logs-stream:dead-letter"


@pytest.mark.parametrize("attempt", [1, 2, 3, 10, 50])
def test_backoff_grows_is_capped_and_jittered(attempt: int) -> None:
    backoff = Backoff(base=0.5, factor=2, cap=4, jitter=0.5)
    ceiling = min(4, 0.5 * 2 ** (attempt - 1))
    delays = [backoff.delay(attempt) for _ in range(50)]
    assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


def test_batch_result_is_dict_like() -> None:
    result = BatchResult(read=3, success=2, dead_lettered=1)
    assert (result["success"], result["failed"]) == (2, 1)
    assert dict(result)["read"] == 3
    with pytest.raises(KeyError):
        result["nope"]


def test_config_file_yaml_json_and_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("redis:\n  url: redis://x:1/0\n")
    (tmp_path / "b.json").write_text('{"redis": {"url": "redis://y:2/0"}}')
    (tmp_path / "c.yaml").write_text("- a list\n")
    (tmp_path / "d.yaml").write_text("")
    (tmp_path / "e.yaml").write_text("a: [unclosed\n")
    assert load_config_file(tmp_path / "a.yaml") == {"redis": {"url": "redis://x:1/0"}}
    assert (
        RedisSettings(**load_config_file(tmp_path / "b.json")["redis"]).url.get_secret_value()
        == "redis://y:2/0"
    )
    assert load_config_file(tmp_path / "d.yaml") == {}
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config_file(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(tmp_path / "e.yaml")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "missing.yaml")


def test_settings_reject_unknown_keys() -> None:
    with pytest.raises(ValueError, match="key_prefx"):
        RedisSettings(key_prefx="x")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg2://u:p@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_database_urls_use_psycopg2(given: str, expected: str) -> None:
    assert normalise_url(given) == expected


def test_pid_helpers_follow_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(["sleep", "30"])
    pidfile = tmp_path / "p.pid"
    pidfile.write_text(f"{proc.pid}\n")
    assert read_pid(pidfile) == proc.pid
    stop_pid(proc.pid, timeout=5)
    proc.wait(timeout=5)
    assert not pid_alive(proc.pid)
    assert read_pid(pidfile) is None
    assert read_pid(tmp_path / "absent.pid") is None


def test_stop_pid_kills_a_process_that_ignores_sigterm() -> None:
    ignore_term = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", ignore_term], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()  # handler installed
    stop_pid(proc.pid, timeout=0.5, sig=signal.SIGTERM)
    assert proc.wait(timeout=5) == -signal.SIGKILL


def test_wait_until_times_out_with_the_thing_it_waited_for() -> None:
    with pytest.raises(DevServiceError, match="waiting for the moon"):
        wait_until(lambda: False, 0.05, "the moon", interval=0.01)


def test_port_open_is_false_for_a_closed_port() -> None:
    assert not port_open(1)


def test_manager_rejects_unknown_services() -> None:
    with pytest.raises(DevServiceError, match="unknown service"):
        ServiceManager(["mongodb"])


def test_manager_env_honours_given_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:7000/2")
    monkeypatch.setenv("ELASTICSEARCH_URL", "http://es.example:9200")
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("KILLKRILL_DEV_PORT_OFFSET", "7")
    env = ServiceManager().env()
    assert env["REDIS_URL"] == "redis://elsewhere:7000/2"
    assert env["ELASTICSEARCH_URL"] == "http://es.example:9200"
    assert env["TEST_DATABASE_URL"] == "postgresql://test:test@127.0.0.1:5439/killkrill_test"
    statuses = {s.name: s for s in ServiceManager(["redis"]).status()}
    assert statuses["redis"].state == "given"


def test_status_line_is_readable() -> None:
    line = ServiceStatus("redis", "redis://127.0.0.1:6379/1", "running", 42).line()
    assert line.split() == ["redis", "running", "redis://127.0.0.1:6379/1", "pid", "42"]


def test_port_offset_must_be_an_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("KILLKRILL_DEV_PORT_OFFSET", "lots")
    with pytest.raises(DevServiceError, match="must be an integer"):
        ServiceManager(["redis"]).env()
    assert os.environ["KILLKRILL_DEV_PORT_OFFSET"] == "lots"


@pytest.mark.parametrize(
    "settings_class", ["ReceiverSettings", "LogWorkerSettings", "MetricsWorkerSettings"]
)
def test_every_process_settings_loads_the_same_layers(
    settings_class: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import killkrill.config as config

    cls = getattr(config, settings_class)
    assert issubclass(cls, config.ProcessSettings)
    (tmp_path / "kk.yaml").write_text(
        f"{cls.config_section}:\n  pipeline: from-file\n  redis:\n    url: redis://file:1/0\n"
    )
    for var in ("REDIS_URL", "DATABASE_URL", "ELASTICSEARCH_URL"):
        monkeypatch.delenv(var, raising=False)
    assert cls.load(tmp_path / "kk.yaml").pipeline == "from-file"
    monkeypatch.setenv("KILLKRILL_PIPELINE", "from-env")
    monkeypatch.setenv("KILLKRILL_REDIS__SOCKET_TIMEOUT", "3")
    loaded = cls.load(tmp_path / "kk.yaml")
    assert (loaded.pipeline, loaded.redis.url.get_secret_value(), loaded.redis.socket_timeout) == (
        "from-env",
        "redis://file:1/0",
        3.0,
    )
    monkeypatch.setenv("REDIS_URL", "redis://env:2/0")
    assert cls.load(tmp_path / "kk.yaml").redis.url.get_secret_value() == "redis://env:2/0"
    flagged = cls.load(tmp_path / "kk.yaml", {"pipeline": "from-flag", "redis.url": None})
    assert (flagged.pipeline, flagged.redis.url.get_secret_value()) == (
        "from-flag",
        "redis://env:2/0",
    )
    with pytest.raises(ConfigError) as err:
        cls.load(None, {"pipeline": "Not A Label", "redis.socket_timeout": -1})
    message = str(err.value)
    assert f"invalid {cls.label} settings" in message
    assert "pipeline: Value error, must be a DNS label" in message
    assert "redis.socket_timeout" in message


def test_elasticsearch_sets_at_ports_offsets_apart_never_share_a_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sets of dev services at offsets 0, 100, 200, ...: no Elasticsearch takes another's
    HTTP or transport port (the transport port used to be HTTP + 100, the next set's HTTP)."""
    from killkrill.dev.elasticsearch_server import ElasticsearchServer

    ports: list[str] = []
    for offset in range(0, 1000, 100):
        monkeypatch.setenv("KILLKRILL_DEV_PORT_OFFSET", str(offset))
        settings = ElasticsearchServer().settings()
        ports += [settings["http.port"], settings["transport.port"]]
    assert len(ports) == len(set(ports)), sorted(ports)
