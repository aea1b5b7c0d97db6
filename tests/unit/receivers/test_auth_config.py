"""API-key checks and settings loading."""

from __future__ import annotations

from pathlib import Path

import pytest

from killkrill.config import ApiKey, AuthSettings, ReceiverSettings, hash_api_key
from killkrill.errors import ConfigError
from killkrill.receivers.auth import ANONYMOUS, Authenticator
from killkrill.receivers.errors import RequestError


def _auth(**kw: object) -> Authenticator:
    return Authenticator(
        AuthSettings(
            keys=[
                ApiKey(name="app", key="s3cret"),  # type: ignore[arg-type]
                ApiKey(name="prom", sha256=hash_api_key("p-key"), scopes=["remote_write"]),
            ],
            **kw,  # type: ignore[arg-type]
        )
    )


def test_keys_are_kept_only_as_hashes() -> None:
    key = ApiKey(name="app", key="s3cret")  # type: ignore[arg-type]
    assert key.key is None and key.sha256 == hash_api_key("s3cret")
    assert "s3cret" not in repr(key)


@pytest.mark.parametrize(
    ("headers", "scope", "status"),
    [
        ({}, "logs", 401),
        ({"authorization": "Basic eDp5"}, "logs", 401),
        ({"authorization": "Bearer wrong"}, "logs", 401),
        ({"x-api-key": "wrong"}, "logs", 401),
        ({"authorization": "Bearer p-key"}, "logs", 403),
        ({"authorization": "Bearer s3cret"}, "logs", 200),
        ({"x-api-key": "s3cret"}, "metrics", 200),
        ({"authorization": "bearer p-key"}, "remote_write", 200),
    ],
)
def test_authenticator(headers: dict[str, str], scope: str, status: int) -> None:
    auth = _auth()
    if status == 200:
        assert auth.check(headers, scope).name in ("app", "prom")
        return
    with pytest.raises(RequestError) as info:
        auth.check(headers, scope)
    assert info.value.status == status
    assert info.value.field == "Authorization"


def test_disabled_auth_is_anonymous_and_loud(caplog: pytest.LogCaptureFixture) -> None:
    assert _auth(enabled=False).check({}, "logs").name == ANONYMOUS
    assert "authentication is OFF" in caplog.text


def test_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  - name: fluentbit\n    key: fb-key\n    scopes: [logs]\n")
    auth = Authenticator(AuthSettings(keys_file=path))
    assert auth.check({"x-api-key": "fb-key"}, "logs").name == "fluentbit"
    path.write_text("keys:\n  - name: x\n")
    with pytest.raises(ConfigError, match="invalid key entry"):
        AuthSettings(keys_file=path).all_keys()


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "receivers:\n  http: {port: 1000, max_batch_records: 7}\n  syslog: {port: 2000}\n"
    )
    monkeypatch.setenv("KILLKRILL_HTTP__PORT", "3000")
    monkeypatch.setenv("KILLKRILL_ELASTICSEARCH__URL", "http://ignored")
    monkeypatch.setenv("REDIS_URL", "redis://example:1/2")
    s = ReceiverSettings.load(cfg, {"syslog.port": 4000, "http.host": None})
    assert (s.http.port, s.http.max_batch_records, s.syslog.port) == (3000, 7, 4000)
    assert s.redis.url.get_secret_value() == "redis://example:1/2"


def test_invalid_settings_are_all_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILLKRILL_HTTP__PORT", "http")
    with pytest.raises(ConfigError) as info:
        ReceiverSettings.load(None, {"syslog.tls_port": 6514, "pipeline": "Bad Name"})
    text = str(info.value)
    assert "http.port" in text and "pipeline" in text and "tls_cert" in text


@pytest.mark.parametrize(
    ("streams", "stream", "allowed"),
    [
        (None, "logs", True),
        (None, "http_requests", True),
        (["http_requests"], "http_requests", True),
        (["http_requests"], "metrics", False),
        ([], "logs", False),
    ],
)
def test_key_streams(streams: list[str] | None, stream: str, allowed: bool) -> None:
    auth = Authenticator(
        AuthSettings(keys=[ApiKey(name="k", key="k-key", streams=streams)]),  # type: ignore[arg-type]
        ["logs", "metrics", "http_requests"],
    )
    client = auth.check({"x-api-key": "k-key"}, "metrics")
    if allowed:
        client.check_stream(stream)
        return
    with pytest.raises(RequestError) as info:
        client.check_stream(stream)
    assert info.value.status == 403 and info.value.code == "forbidden_stream"
    assert f"'{stream}'" in info.value.reason


def test_a_key_naming_an_undeclared_stream_is_a_config_error(tmp_path: Path) -> None:
    keys = [{"name": "k", "key": "x", "streams": ["metrcs"]}]
    with pytest.raises(ConfigError, match=r"metrcs.*declared: logs, metrics"):
        ReceiverSettings.load(None, {"auth.keys": keys})
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  - {name: k, key: x, streams: [metrcs]}\n")
    with pytest.raises(ConfigError, match="metrcs"):
        Authenticator(AuthSettings(keys_file=path), ["logs", "metrics"])


def test_reload_keeps_the_old_keys_when_the_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  - {name: a, key: a-key}\n")
    auth = Authenticator(AuthSettings(keys_file=path))
    path.write_text("keys:\n  - {name: b, key: b-key}\n")
    assert auth.reload()
    assert auth.check({"x-api-key": "b-key"}, "logs").name == "b"
    with pytest.raises(RequestError):
        auth.check({"x-api-key": "a-key"}, "logs")
    path.write_text("keys: [{name: broken}]\n")
    assert not auth.reload()
    assert auth.check({"x-api-key": "b-key"}, "logs").name == "b"


@pytest.mark.parametrize(
    ("streams", "problem"),
    [
        ("logs,metrics,http_requests", None),
        (["metrics"], None),
        (["logs", "logs"], "declared twice"),
        (["no spaces"], "may hold only"),
        ([], "at least one"),
    ],
)
def test_declared_streams(streams: object, problem: str | None) -> None:
    if problem is None:
        settings = ReceiverSettings.load(None, {"streams": streams})
        assert "logs" not in settings.metric_streams
        return
    with pytest.raises(ConfigError, match=problem):
        ReceiverSettings.load(None, {"streams": streams})


@pytest.mark.parametrize(
    ("setting", "value"),
    [("http.max_batch_records", 10_001), ("syslog.batch_size", 10_001)],
)
def test_batches_are_bounded_by_the_atomic_append(setting: str, value: int) -> None:
    with pytest.raises(ConfigError, match=setting):
        ReceiverSettings.load(None, {setting: value})


@pytest.mark.parametrize(
    ("flag", "ok"), [("debug", True), ("WARNING", True), ("loud", False), ("", False)]
)
def test_log_level_is_a_setting(flag: str, ok: bool) -> None:
    if ok:
        assert ReceiverSettings.load(None, {"log_level": flag}).log_level == flag.lower()
        return
    with pytest.raises(ConfigError, match="log_level"):
        ReceiverSettings.load(None, {"log_level": flag})
