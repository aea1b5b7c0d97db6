"""The Elasticsearch sink over TLS with credentials, against a real TLS + auth front.

The dev Elasticsearch has no security, so nginx stands in front of it (``tls_front.py``):
HTTPS with a certificate from a throwaway CA, basic auth (htpasswd) on one port, an
``Authorization: ApiKey`` check on the other. Passwords and keys are random per run and
watched by the leak guard: none may appear in any log line of these tests.

What is checked: the log worker indexes with basic auth from a password file and the CA
file, and with an API key file (both forms); a wrong CA and missing credentials are
refused with a message that names the fix, the worker stays unready and retries, nothing
is dead-lettered, and the same entries are indexed once the settings are right;
``verify_certs: false`` works but warns; the start-up line shows where, redacted.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from elasticsearch import Elasticsearch
from leak_guard import LeakGuard
from log_worker_helpers import DEAD_LETTER, GROUP, STREAM, es_count, ops_get, pending_count
from pending import age_pending
from polling import wait_for
from run_names import ES_INDEX_PREFIX, RUN_ID
from tls_front import NGINX, OPENSSL, TlsFront, tls_front

from killkrill.config import LogWorkerSettings
from killkrill.errors import ServiceUnavailable
from log_worker.worker import LogWorker

AddLogs = Callable[..., list[bytes]]

pytestmark = pytest.mark.skipif(
    NGINX is None or OPENSSL is None,
    reason="nginx or openssl not installed (Debian: nginx, openssl; `make peers`)",
)


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, elasticsearch_url: str, leak_guard: LeakGuard
) -> Iterator[TlsFront]:
    """nginx with TLS and auth in front of the dev Elasticsearch, for this module."""
    with tls_front(tmp_path_factory.mktemp("tls-front"), elasticsearch_url, leak_guard) as f:
        yield f


@pytest.fixture
def settings(redis_url: str, redis_client: redis.Redis) -> Callable[..., LogWorkerSettings]:
    """``settings(**elasticsearch)``: a log worker's settings on this run's Redis and index
    prefix, with these ``elasticsearch.*`` settings (fast retries, small batches)."""

    def make(*, install_template: bool = True, **elasticsearch: Any) -> LogWorkerSettings:
        return LogWorkerSettings.validate_settings(
            {
                "redis": {"url": redis_url, "socket_timeout": 5},
                "elasticsearch": {
                    "index_prefix": ES_INDEX_PREFIX,
                    "request_timeout": 10,
                    **elasticsearch,
                },
                "consumer": {"batch_size": 50, "name": f"auth-{RUN_ID}"},
                "retry": {"max_retries": 1, "initial_backoff": 0.05, "max_backoff": 0.1},
                "install_template": install_template,
                "number_of_replicas": 0,
            }
        )

    return make


def _index_all(
    s: LogWorkerSettings, add_logs: AddLogs, client: redis.Redis, es: Elasticsearch, n: int
) -> None:
    """Add ``n`` records, run one worker with ``s`` over them: all indexed, none left."""
    add_logs(n)
    with LogWorker(s) as worker:
        result = worker.process_batch(n)
    assert (result.success, result.dead_lettered, result.pending) == (n, 0, 0)
    assert es_count(es) == n
    assert client.xlen(DEAD_LETTER) == 0


def _readyz_saying(port: int, text: str) -> tuple[int, str] | None:
    """``/readyz``'s status and body once the body holds ``text`` (None before, and while
    the ops port is not open yet)."""
    try:
        status, body = ops_get(port, "/readyz")
    except OSError:
        return None
    return (status, body) if text in body else None


def _bulk_lines(front: TlsFront) -> list[str]:
    """The proxy's access log lines of ``_bulk`` requests."""
    log = front.directory / "access.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if "/_bulk" in line]


@pytest.mark.integration
def test_basic_auth_from_a_password_file_with_the_ca_file_indexes_every_record(
    front: TlsFront,
    settings: Callable[..., LogWorkerSettings],
    redis_client: redis.Redis,
    add_logs: AddLogs,
    elasticsearch_client: Elasticsearch,
    leak_guard: LeakGuard,
    tmp_path: Path,
) -> None:
    password_file = leak_guard.secret_file(tmp_path / "password", front.password)
    s = settings(
        url=front.basic_url,
        username=front.username,
        password_file=str(password_file),
        ca_file=str(front.ca_file),
    )
    _index_all(s, add_logs, redis_client, elasticsearch_client, 30)
    # Through the front, as its user, over TLS (the proxy logs the user of each request).
    assert any(f" {front.username} " in line and '" 200 ' in line for line in _bulk_lines(front))


@pytest.mark.integration
@pytest.mark.parametrize("form", ["encoded", "id:api_key"])
def test_an_api_key_file_indexes_every_record(
    form: str,
    front: TlsFront,
    settings: Callable[..., LogWorkerSettings],
    redis_client: redis.Redis,
    add_logs: AddLogs,
    elasticsearch_client: Elasticsearch,
    leak_guard: LeakGuard,
    tmp_path: Path,
) -> None:
    """The file holds the key as Elasticsearch hands it out (``encoded``) or as its two
    parts; either way the request carries ``Authorization: ApiKey <encoded>``."""
    key = front.api_key if form == "encoded" else f"{front.api_key_id}:{front.api_key_secret}"
    key_file = leak_guard.secret_file(tmp_path / "api-key", key)
    s = settings(url=front.api_key_url, api_key_file=str(key_file), ca_file=str(front.ca_file))
    _index_all(s, add_logs, redis_client, elasticsearch_client, 20)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong CA", "TLS verification failed"),
        ("no credentials", "refused the credentials (401"),
        ("wrong password", "refused the credentials (401"),
    ],
)
def test_a_refused_connection_is_retried_never_dead_lettered_and_indexed_once_fixed(
    case: str,
    expected: str,
    front: TlsFront,
    settings: Callable[..., LogWorkerSettings],
    redis_client: redis.Redis,
    add_logs: AddLogs,
    elasticsearch_client: Elasticsearch,
    leak_guard: LeakGuard,
    tmp_path: Path,
) -> None:
    """A wrong CA (TLS verification refuses the certificate) and a 401 are whole-request
    failures about the settings, not about any record: the worker says what to fix, leaves
    the entries pending (handed back, so no delivery is counted) and dead-letters none;
    with the right settings the same entries are indexed, once."""
    password_file = leak_guard.secret_file(tmp_path / "password", front.password)
    good = {
        "url": front.basic_url,
        "username": front.username,
        "password_file": str(password_file),
        "ca_file": str(front.ca_file),
    }
    if case == "wrong CA":
        bad = {**good, "ca_file": str(front.other_ca_file)}
    elif case == "no credentials":
        bad = {"url": front.basic_url, "ca_file": str(front.ca_file)}
    else:
        wrong = leak_guard.secret_file(tmp_path / "wrong", leak_guard.secret("a wrong password"))
        bad = {**good, "password_file": str(wrong)}
    add_logs(12)

    # At start (the index template is installed first): refused before anything is read.
    with LogWorker(settings(**bad)) as worker, pytest.raises(ServiceUnavailable) as refused:
        worker.process_batch(12)
    assert expected in str(refused.value)
    assert "elasticsearch." in str(refused.value)  # names the setting that fixes it
    assert (redis_client.xlen(STREAM), pending_count(redis_client)) == (12, 0)

    # Past the start (template managed elsewhere): the _bulk is refused, entries stay pending.
    with LogWorker(settings(install_template=False, **bad)) as worker:
        result = worker.process_batch(12)
    assert (result.success, result.dead_lettered, result.pending) == (0, 0, 12)
    assert all(expected in error for error in result.errors)
    assert pending_count(redis_client) == 12
    assert redis_client.xlen(DEAD_LETTER) == 0
    deliveries = redis_client.xpending_range(STREAM, GROUP, "-", "+", 100)
    assert {row["times_delivered"] for row in deliveries} == {0}  # handed back, not counted

    age_pending(redis_client, STREAM, GROUP)  # as if the worker had crashed long ago
    with LogWorker(settings(**good)) as worker:
        fixed = worker.process_batch(12)
    assert (fixed.success, fixed.dead_lettered) == (12, 0)
    assert es_count(elasticsearch_client) == 12
    assert (redis_client.xlen(STREAM), pending_count(redis_client)) == (0, 0)
    assert redis_client.xlen(DEAD_LETTER) == 0


@pytest.mark.integration
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong CA", "TLS verification failed"),
        ("no credentials", "refused the credentials (401"),
    ],
)
def test_the_worker_process_stays_unready_saying_why_until_stopped(
    case: str,
    expected: str,
    front: TlsFront,
    start_worker: Callable[..., Any],
    redis_client: redis.Redis,
    add_logs: AddLogs,
    leak_guard: LeakGuard,
    tmp_path: Path,
) -> None:
    """``killkrill worker logs`` against a front it cannot use: ``/readyz`` answers 503 with
    the reason and the fix, the log says it waits, the entries are untouched, and SIGTERM
    still ends it with 0."""
    if case == "wrong CA":  # the right credentials, a CA that did not sign the certificate
        password_file = leak_guard.secret_file(tmp_path / "password", front.password)
        flags = [
            "--elasticsearch-ca-file", str(front.other_ca_file),
            "--elasticsearch-username", front.username,
            "--elasticsearch-password-file", str(password_file),
        ]  # fmt: skip
    else:
        flags = ["--elasticsearch-ca-file", str(front.ca_file)]
    add_logs(5)
    worker = start_worker(
        f"auth-{case.replace(' ', '-')}", "--elasticsearch-url", front.basic_url, *flags
    )
    status, body = wait_for(
        lambda: _readyz_saying(worker.ops_port, expected), 60, f"/readyz to say {expected!r}"
    )
    assert status == 503
    assert "elasticsearch.username" in body or "elasticsearch.ca_file" in body

    def waits() -> bool:
        """The start loop's own line: ``/readyz`` probes Elasticsearch by itself, so it may say
        why before the start attempt (retried by the client) has given up and logged it."""
        return any(
            line.get("msg") == "cannot start yet, waiting" and expected in line.get("error", "")
            for line in worker.log_lines()
        )

    wait_for(waits, 60, f"the log to say it waits because {expected!r}")
    assert (redis_client.xlen(STREAM), pending_count(redis_client)) == (5, 0)
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0


@pytest.mark.integration
def test_verify_certs_false_indexes_but_warns_and_the_start_line_is_redacted(
    front: TlsFront,
    start_worker: Callable[..., Any],
    redis_client: redis.Redis,
    add_logs: AddLogs,
    elasticsearch_client: Elasticsearch,
    leak_guard: LeakGuard,
    tmp_path: Path,
) -> None:
    """No CA file and ``--no-elasticsearch-verify-certs``: the worker accepts the front's
    certificate, indexes everything, and logs a warning that verification is off. The
    credentials come from the environment (KILLKRILL_ELASTICSEARCH__*)."""
    password_file = leak_guard.secret_file(tmp_path / "password", front.password)
    add_logs(25)
    worker = start_worker(
        "auth-unverified",
        "--elasticsearch-url",
        front.basic_url,
        "--no-elasticsearch-verify-certs",
        env={
            "KILLKRILL_ELASTICSEARCH__USERNAME": front.username,
            "KILLKRILL_ELASTICSEARCH__PASSWORD_FILE": str(password_file),
        },
    )
    wait_for(lambda: es_count(elasticsearch_client) == 25, 60, "25 documents through the front")
    worker.signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    lines = worker.log_lines()
    warnings = [
        line
        for line in lines
        if line.get("level") == "warning" and "verify_certs is false" in line.get("msg", "")
    ]
    assert len(warnings) == 1, worker.output()
    assert warnings[0]["elasticsearch"] == front.basic_url
    [started] = [line for line in lines if line.get("msg") == "log worker started"]
    assert started["redis"].startswith(f"redis://kk-test-{RUN_ID}:***@127.0.0.1:")
    assert started["elasticsearch"] == front.basic_url
    assert started["elasticsearch_auth"] == (
        f"user {front.username!r} with the password in {password_file}"
    )
    assert redis_client.xlen(DEAD_LETTER) == 0
