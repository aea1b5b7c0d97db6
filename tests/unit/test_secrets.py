"""Credentials in settings, pure parts: the redacted form of URLs, secrets read from files,
settings that never show a password, the Elasticsearch credentials and their messages."""

from __future__ import annotations

import base64
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, TlsError
from elasticsearch import ApiError
from pydantic import SecretStr

from killkrill.config import (
    AuthSettings,
    ElasticsearchSettings,
    LogWorkerSettings,
    MetricsWorkerSettings,
    ReceiverSettings,
    read_secret_file,
    redact_url,
)
from killkrill.config.secrets import url_has_credentials
from killkrill.dev.base import ServiceStatus
from killkrill.errors import ConfigError
from killkrill.esclient import credentials_source, elasticsearch_client
from killkrill.workers.logs.sink import ElasticsearchSink

PASSWORD = "s3cr3t-Pa55word"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (f"redis://:{PASSWORD}@r:6379/1", "redis://:***@r:6379/1"),
        (f"redis://kk:{PASSWORD}@r:6379/1", "redis://kk:***@r:6379/1"),
        (f"rediss://kk:{PASSWORD}@[::1]:6380/2", "rediss://kk:***@[::1]:6380/2"),
        ("redis://kk@r:6379/1", "redis://kk@r:6379/1"),  # a user name alone is no secret
        (f"postgresql://u:{PASSWORD}@db:5432/x", "postgresql://u:***@db:5432/x"),
        (
            f"postgresql://u:{PASSWORD}@db/x?options=-csearch_path%3Ds",
            "postgresql://u:***@db/x?options=-csearch_path%3Ds",
        ),
        (
            f"postgresql://db/x?password={PASSWORD}&sslmode=require",
            "postgresql://db/x?password=***&sslmode=require",
        ),
        (
            f"unix:///run/redis.sock?db=1&password={PASSWORD}",
            "unix:///run/redis.sock?db=1&password=***",
        ),
        (f"https://elastic:{PASSWORD}@es.example:9200", "https://elastic:***@es.example:9200"),
        (f"https://u:p%40ss{PASSWORD}@es:9200/prefix", "https://u:***@es:9200/prefix"),
        (f"http://u:{PASSWORD}@es:notaport", "<URL not shown: it could not be parsed>"),
    ],
)
def test_redact_url_hides_every_password_and_keeps_where(url: str, shown: str) -> None:
    redacted = redact_url(url)
    assert PASSWORD not in redacted
    assert redacted == shown
    assert redact_url(SecretStr(url)) == redacted


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://es:9200", False),
        ("https://u:p@es:9200", True),
        ("https://u@es:9200", True),
        ("http://[::1", False),  # unparseable: no credentials to speak of
    ],
)
def test_url_has_credentials(url: str, expected: bool) -> None:
    assert url_has_credentials(SecretStr(url)) is expected


def test_read_secret_file_strips_the_newline_and_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "ok").write_text(f"  {PASSWORD}\n")
    secret = read_secret_file(tmp_path / "ok", "elasticsearch.password_file")
    assert secret.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(secret)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"elasticsearch\.password_file: .*empty"):
        read_secret_file(tmp_path / "empty", "elasticsearch.password_file")
    with pytest.raises(ConfigError, match=r"elasticsearch\.api_key_file: cannot read"):
        read_secret_file(tmp_path / "missing", "elasticsearch.api_key_file")


def _all_settings() -> list[Any]:
    urls = {
        "redis": {"url": f"redis://kk:{PASSWORD}@r:6379/1"},
        "elasticsearch": {"url": f"https://elastic:{PASSWORD}@es:9200"},
        "database": {"url": f"postgresql://u:{PASSWORD}@db/x"},
    }
    return [
        LogWorkerSettings.validate_settings({k: urls[k] for k in ("redis", "elasticsearch")}),
        MetricsWorkerSettings.validate_settings({k: urls[k] for k in ("redis", "database")}),
        ReceiverSettings.validate_settings({"redis": urls["redis"]}),
    ]


@pytest.mark.parametrize("settings", _all_settings(), ids=lambda s: type(s).__name__)
def test_settings_never_show_a_url_password(settings: Any) -> None:
    for shown in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
    ):
        assert PASSWORD not in shown
    assert PASSWORD in settings.redis.url.get_secret_value()  # the client still gets it


def test_invalid_settings_are_reported_without_their_values() -> None:
    with pytest.raises(ConfigError) as err:
        LogWorkerSettings.validate_settings(
            {
                "redis": {"url": f"redis://kk:{PASSWORD}@r/1", "socket_timeout": PASSWORD},
                "elasticsearch": {"url": ["not", PASSWORD]},
            }
        )
    assert "redis.socket_timeout" in str(err.value) and "elasticsearch.url" in str(err.value)
    assert PASSWORD not in str(err.value)


def test_a_bad_entry_of_the_api_keys_file_is_reported_without_the_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    key = "Zq7wX-k"  # short and first: pydantic would echo it in the input it shows
    keys.write_text(f"keys:\n  - key: {key}\n    name: ci\n    sha256: '{'0' * 64}'\n")
    with pytest.raises(ConfigError) as err:
        AuthSettings(enabled=True, keys_file=keys).all_keys()
    assert "key and sha256 disagree" in str(err.value)
    assert key not in str(err.value)


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({}, None),
        ({"api_key_file": "/k"}, None),
        ({"username": "w", "password_file": "/p"}, None),
        ({"url": "https://u:p@es:9200"}, None),
        ({"api_key_file": "/k", "username": "w", "password_file": "/p"}, "not both"),
        ({"username": "w"}, "go together"),
        ({"password_file": "/p"}, "go together"),
        ({"url": "https://u:p@es:9200", "api_key_file": "/k"}, "url holds credentials"),
    ],
)
def test_elasticsearch_takes_one_kind_of_credentials(
    given: dict[str, Any], error: str | None
) -> None:
    if error is None:
        assert ElasticsearchSettings.model_validate(given).verify_certs is True  # on by default
    else:
        with pytest.raises(ValueError, match=error):
            ElasticsearchSettings.model_validate(given)


@pytest.mark.parametrize(
    ("content", "header"),
    [
        ("ZW5jb2RlZA==", "ApiKey ZW5jb2RlZA=="),
        ("key-id:key-secret", "ApiKey " + base64.b64encode(b"key-id:key-secret").decode()),
    ],
)
async def test_the_api_key_file_becomes_the_authorization_header(
    tmp_path: Path, content: str, header: str
) -> None:
    (tmp_path / "key").write_text(content + "\n")
    client = elasticsearch_client(ElasticsearchSettings(api_key_file=tmp_path / "key"))
    try:
        assert client._headers["authorization"] == header
    finally:
        await client.close()


async def test_basic_auth_reads_the_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    settings = ElasticsearchSettings(username="writer", password_file=tmp_path / "pw")
    client = elasticsearch_client(settings)
    try:
        expected = base64.b64encode(f"writer:{PASSWORD}".encode()).decode()
        assert client._headers["authorization"] == f"Basic {expected}"
    finally:
        await client.close()
    assert credentials_source(settings) == f"user 'writer' with the password in {tmp_path / 'pw'}"


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({"api_key_file": "missing-key"}, "elasticsearch.api_key_file: cannot read"),
        ({"username": "w", "password_file": "missing-pw"}, "elasticsearch.password_file"),
        ({"ca_file": "missing-ca.pem"}, "elasticsearch.ca_file: .* is not a file"),
    ],
)
def test_missing_secret_or_ca_files_are_config_errors_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: dict[str, Any], error: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=error):
        elasticsearch_client(ElasticsearchSettings.model_validate(given))


async def test_verify_certs_off_is_a_warning_naming_the_redacted_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = ElasticsearchSettings(
        url=SecretStr(f"https://e:{PASSWORD}@es:9200"), verify_certs=False
    )
    with caplog.at_level(logging.WARNING, logger="killkrill.elasticsearch"):
        client = elasticsearch_client(settings)
    await client.close()
    [record] = [r for r in caplog.records if "verify_certs is false" in r.getMessage()]
    assert record.elasticsearch == "https://e:***@es:9200"  # type: ignore[attr-defined]
    assert PASSWORD not in caplog.text


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://es.example:9200", True),
        ("http://127.0.0.1:9200", False),
        ("http://localhost:9200", False),
        ("https://es.example:9200", False),
    ],
)
async def test_credentials_over_plain_http_elsewhere_are_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str, warned: bool
) -> None:
    (tmp_path / "key").write_text("ZW5jb2RlZA==\n")
    settings = ElasticsearchSettings(url=SecretStr(url), api_key_file=tmp_path / "key")
    with caplog.at_level(logging.WARNING, logger="killkrill.elasticsearch"):
        client = elasticsearch_client(settings)
    await client.close()
    assert ("plain http" in caplog.text) is warned


def _api_error(status: int, body: Any) -> ApiError:
    meta = ApiResponseMeta(
        status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0, node=None
    )
    return ApiError("refused", meta=meta, body=body)


def _tls_error() -> TlsError:
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLCertVerificationError as cause:
            cause.verify_message = "unable to get local issuer certificate"
            raise TlsError("TLS error") from cause
    except TlsError as exc:
        return exc


SECURITY_401 = {"error": {"type": "security_exception", "reason": "missing credentials"}}


@pytest.mark.parametrize(
    ("credentials", "exc", "says"),
    [
        (None, _api_error(401, SECURITY_401), "set elasticsearch.api_key_file"),
        (None, _api_error(401, "<html>401</html>"), "sent no credentials"),
        ("the API key in /k", _api_error(401, SECURITY_401), "check that they are current"),
        (
            "the API key in /k",
            _api_error(403, {"error": {"type": "security_exception"}}),
            "`index`",
        ),
        ("the API key in /k", _api_error(403, "<html>403</html>"), "denied _bulk (403)"),
        (
            None,
            _api_error(403, {"error": {"type": "cluster_block_exception", "reason": "ro"}}),
            "answered 403 to _bulk: cluster_block_exception",
        ),
        (None, _tls_error(), "unable to get local issuer certificate"),
        (None, _tls_error(), "elasticsearch.ca_file"),
    ],
)
def test_whole_request_refusals_say_what_fixes_them(
    credentials: str | None, exc: Any, says: str
) -> None:
    sink = ElasticsearchSink(object(), credentials=credentials)  # type: ignore[arg-type]
    assert says in sink.describe(exc, "_bulk")


def test_dev_status_lines_redact_the_password() -> None:
    line = ServiceStatus(
        "postgres", f"postgresql://test:{PASSWORD}@127.0.0.1:5432/x", "given"
    ).line()
    assert line.split()[2] == "postgresql://test:***@127.0.0.1:5432/x"
