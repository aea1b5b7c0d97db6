"""Fixtures of the integration-testing guide, against real Redis, PostgreSQL, Elasticsearch.

Service URLs come from ``REDIS_URL``, ``TEST_DATABASE_URL`` and ``ELASTICSEARCH_URL`` with the
guide's defaults. Start local services with ``make services`` (or
``killkrill dev services up && eval "$(killkrill dev services env)"``).

Isolation: a run never touches data it did not create, so two runs (or a run and a local
pipeline) can share one set of services. Each run has an id (``KILLKRILL_TEST_RUN``, or a
random one) and owns:

* Redis: one database of its own, claimed for the run (see :func:`_claim_redis_db`);
  ``redis_url`` points at it and ``redis_client`` empties it before and after each test;
* PostgreSQL: a schema of its own, ``kk_test_<run>`` (``postgres_url`` sets its
  ``search_path``), migrated once and dropped at the end; tables are truncated per test;
* Elasticsearch: the index prefix ``logs-test-<run>`` (``es_index_prefix``; patterns
  ``es_index_pattern``) and any index or template whose name holds the run id; those are
  deleted before and after each test, nothing else is.

Credentials: the run logs in with secrets of its own, made by the ``leak_guard`` (see
``tests/leak_guard.py``), which fails the run if one of them shows up in any output or log:

* Redis: an ACL user ``kk-test-<run>`` with a random password (``ACL SETUSER`` through
  ``REDIS_URL``'s login; deleted at the end); ``redis_url`` carries it;
* PostgreSQL: a role ``kk_test_<run>`` with a random password (``CREATE ROLE`` through
  ``TEST_DATABASE_URL``'s role, which needs ``CREATEROLE``: the dev server's ``test`` has
  it), owning nothing but what it creates in the run's schema; dropped at the end;
* Elasticsearch behind a TLS + auth proxy (``tls_front.py``): random passwords and keys.

Kubernetes: ``kube_env``, ``kubeconfig``, ``kube_api`` and ``kube_namespace`` (from
``kube_cluster.py``) bring up the local control plane (``killkrill dev k8s up --all``) or use
the cluster ``KUBECONFIG`` names; a test's namespace is ``kk-test-<run>-<n>``, deleted after it.

A server that refuses the ACL user or the role (a managed Redis, a role without
``CREATEROLE``) is used with the given login, and the guard watches that URL's password.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
import pytest
import redis
from elasticsearch import Elasticsearch
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).parent))  # shared helpers, e.g. polling.py

from kube_cluster import kube_api, kube_env, kube_namespace, kubeconfig  # noqa: F401 - fixtures
from leak_guard import LeakGuard
from run_names import ES_INDEX_PREFIX, PG_SCHEMA, RUN_ID

START_HINT = (
    "start them with `make services` (or `killkrill dev services up` and "
    '`eval "$(killkrill dev services env)"`), or point REDIS_URL / TEST_DATABASE_URL / '
    "ELASTICSEARCH_URL at running instances"
)

_CLAIM_KEY = "killkrill:test-run:{db}"
"""In database 0: which run holds database ``db`` (expires unless refreshed)."""
_OWNED_KEY = "killkrill:test-db:{db}"
"""In database 0: database ``db`` holds only test data (a crashed run's may be reused)."""
_CLAIM_SECONDS = 2 * 3600


def _require(name: str, url: str, default_port: int) -> str:
    """Stop the whole run with one readable message when ``url`` is not reachable."""
    parts = urlsplit(url)
    host, port = parts.hostname or "localhost", parts.port or default_port
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as exc:
        pytest.exit(
            f"{name} is not reachable at {url} ({exc.strerror or exc}); {START_HINT}",
            returncode=3,
        )
    return url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration is an integration test."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.integration)


# --- service URLs -----------------------------------------------------------------------------


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _claim_redis_db(url: str) -> tuple[str, int]:
    """A database of this Redis for this run alone: the one ``url`` names if it is free,
    else the first free one. Free means empty, or left by a run whose claim expired
    (marked as test data in database 0). Claimed with SET NX, so two runs never share."""
    given = int(urlsplit(url).path.lstrip("/") or 0)
    root = redis.from_url(_with_path(url, "/0"))
    try:
        try:
            count = int(root.config_get("databases").get("databases", 16))
        except redis.ResponseError:  # CONFIG refused (a managed Redis): the default
            count = 16
        for db in [given, *(n for n in range(1, count) if n != given)]:
            if db == 0:
                continue  # the default database of every local pipeline
            candidate = redis.from_url(_with_path(url, f"/{db}"))
            try:
                owned = root.exists(_OWNED_KEY.format(db=db))
                if candidate.dbsize() and not owned:
                    continue  # somebody's data
                if not root.set(_CLAIM_KEY.format(db=db), RUN_ID, nx=True, ex=_CLAIM_SECONDS):
                    continue  # another run holds it
                root.set(_OWNED_KEY.format(db=db), "1")
                candidate.flushdb()  # empty, or a crashed run's leftovers
                return _with_path(url, f"/{db}"), db
            finally:
                candidate.close()
    finally:
        root.close()
    pytest.exit(f"no free Redis database at {url} for this test run; {START_HINT}", returncode=3)


def _with_login(url: str, user: str, password: str) -> str:
    """``url`` logging in as ``user`` with ``password`` (whatever login it had before)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _watch_given_password(guard: LeakGuard, url: str, what: str) -> None:
    password = urlsplit(url).password
    if password and len(password) >= 12:
        guard.register(password, f"{what} password (given in the environment)")


def _redis_run_user(base: str, guard: LeakGuard) -> tuple[str, str | None]:
    """``base`` logging in as an ACL user of this run with a random password, and the
    user's name; ``(base, None)`` when the server refuses ACL SETUSER."""
    user = f"kk-test-{RUN_ID}"
    password = guard.secret("Redis ACL password of the test run")
    root = redis.from_url(base)
    try:
        root.acl_setuser(
            user,
            enabled=True,
            reset=True,
            passwords=[f"+{password}"],
            keys=["*"],
            channels=["*"],
            commands=["+@all"],
        )
    except redis.ResponseError as exc:  # a managed Redis: no ACL for us
        print(f"Redis refused ACL SETUSER ({exc}): the run logs in as REDIS_URL says")
        _watch_given_password(guard, base, "Redis")
        return base, None
    finally:
        root.close()
    return _with_login(base, user, password), user


@pytest.fixture(scope="session")
def redis_url(leak_guard: LeakGuard) -> Iterator[str]:
    """Redis URL from environment, on a database claimed for this run (released at the end),
    logging in as the run's own ACL user (a random password the leak guard watches)."""
    base = _require("Redis", os.getenv("REDIS_URL", "redis://localhost:6379/1"), 6379)
    login, user = _redis_run_user(base, leak_guard)
    url, db = _claim_redis_db(login)
    yield url
    client = redis.from_url(url)
    client.flushdb()
    client.close()
    root = redis.from_url(_with_path(url, "/0"))
    if root.get(_CLAIM_KEY.format(db=db)) == RUN_ID.encode():
        root.delete(_CLAIM_KEY.format(db=db), _OWNED_KEY.format(db=db))
    root.close()
    if user is not None:
        admin = redis.from_url(base)
        admin.acl_deluser(user)
        admin.close()


def _with_search_path(url: str, schema: str) -> str:
    """``url`` whose sessions use ``schema`` first (libpq ``options``, percent-encoded)."""
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _postgres_run_role(base: str, guard: LeakGuard) -> tuple[str, str | None]:
    """``base`` logging in as a role of this run with a random password, and the role's
    name; ``(base, None)`` when ``base``'s role may not create roles."""
    role = PG_SCHEMA  # kk_test_<run>: a plain identifier
    password = guard.secret("PostgreSQL password of the test run")
    try:
        _run_sql(base, f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
    except psycopg2.errors.DuplicateObject:  # left by a crashed run of this id
        _run_sql(base, f"ALTER ROLE {role} LOGIN PASSWORD %s", (password,))
    except psycopg2.errors.InsufficientPrivilege as exc:
        print(f"PostgreSQL refused CREATE ROLE ({exc.pgerror}): the run logs in as given")
        _watch_given_password(guard, base, "PostgreSQL")
        return base, None
    return _with_login(base, role, password), role


@pytest.fixture(scope="session")
def postgres_url(leak_guard: LeakGuard) -> Iterator[str]:
    """PostgreSQL URL for the test database, in a schema of this run's own (dropped at the
    end): its tables are the only ones the suite creates, truncates or drops. It logs in
    as the run's own role (a random password the leak guard watches), which may create
    objects in that schema only."""
    base = os.getenv("TEST_DATABASE_URL", "postgresql://test:test@localhost/killkrill_test")
    _require("PostgreSQL", base, 5432)
    login, role = _postgres_run_role(base, leak_guard)
    _run_sql(base, f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}")
    if role is not None:  # the schema stays the base role's, so dropping it drops all
        _run_sql(base, f"GRANT USAGE, CREATE ON SCHEMA {PG_SCHEMA} TO {role}")
    yield _with_search_path(login, PG_SCHEMA)
    # A new connection: tests restart the server, which ends every session open before.
    _run_sql(base, f"DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE")
    if role is not None:
        _run_sql(base, f"DROP ROLE IF EXISTS {role}")


def _run_sql(url: str, statement: str, params: tuple[Any, ...] | None = None) -> None:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, params)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def elasticsearch_url() -> str:
    """Elasticsearch URL for the test instance."""
    return _require("Elasticsearch", os.getenv("ELASTICSEARCH_URL", "http://localhost:9200"), 9200)


# --- clients, each clean before and after the test ---------------------------------------------


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """Fresh Redis client on this run's database, empty before and after the test."""
    client = redis.from_url(redis_url)
    client.flushdb()
    _refresh_claim(redis_url)
    yield client
    client.flushdb()
    client.close()


def _refresh_claim(url: str) -> None:
    db = int(urlsplit(url).path.lstrip("/"))
    root = redis.from_url(_with_path(url, "/0"))
    root.expire(_CLAIM_KEY.format(db=db), _CLAIM_SECONDS)
    root.close()


@pytest.fixture
def postgres_connection(postgres_url: str) -> Iterator[Any]:
    """PostgreSQL test connection (psycopg2) on empty tables."""
    conn = psycopg2.connect(postgres_url)
    _truncate_tables(conn)
    yield conn
    conn.rollback()
    _truncate_tables(conn)
    conn.close()


def _truncate_tables(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT quote_ident(tablename) FROM pg_tables "
            "WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
        )
        tables = [row[0] for row in cur.fetchall()]
        if tables:
            cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    conn.commit()


def _delete_test_indices(client: Elasticsearch) -> None:
    """Delete this run's indices and index templates (names holding the run id), only."""
    found = client.options(ignore_status=404).indices.get(
        index=f"*{RUN_ID}*", expand_wildcards="open,closed", allow_no_indices=True
    )
    names = [name for name in found.body if not name.startswith(".")] if found else []
    if names:
        client.indices.delete(index=",".join(names), ignore_unavailable=True)
    templates = client.options(ignore_status=404).indices.get_index_template(name=f"*{RUN_ID}*")
    for template in templates.body.get("index_templates", []) if templates else []:
        client.options(ignore_status=404).indices.delete_index_template(name=template["name"])


@pytest.fixture(scope="session")
def es_index_prefix() -> str:
    """Index prefix of this run's log documents (``<prefix>-YYYY.MM.DD``)."""
    return ES_INDEX_PREFIX


@pytest.fixture(scope="session")
def es_index_pattern() -> str:
    """Every log index of this run (search this, not ``logs-*``, to see only its own)."""
    return f"{ES_INDEX_PREFIX}-*"


@pytest.fixture
def elasticsearch_client(elasticsearch_url: str) -> Iterator[Elasticsearch]:
    """Elasticsearch client for the test instance, with none of this run's indices left."""
    client = Elasticsearch([elasticsearch_url], request_timeout=60)
    _delete_test_indices(client)
    yield client
    _delete_test_indices(client)
    client.close()


@pytest.fixture(scope="session")
def database_schema(postgres_url: str) -> str:
    """The test database migrated to the newest schema (Alembic), once per session."""
    from killkrill.db.migrate import upgrade

    upgrade(postgres_url)
    return postgres_url


@pytest.fixture
def db_session(database_schema: str) -> Iterator[Session]:
    """SQLAlchemy session for integration tests, on empty tables."""
    from shared.models import create_engine

    engine = create_engine(database_schema)
    with engine.begin() as conn:
        _truncate_tables(conn.connection.dbapi_connection)
    session_factory = sessionmaker(bind=engine)
    session = session_factory()
    yield session
    session.rollback()
    session.close()
    with engine.begin() as conn:
        _truncate_tables(conn.connection.dbapi_connection)
    engine.dispose()


# --- metrics worker ---------------------------------------------------------------------------


@pytest.fixture
def metrics_worker_config(redis_client: redis.Redis, database_schema: str) -> dict[str, Any]:
    """Configure the metrics worker for testing (the seed's shape: Redis as host/port/db)."""
    kwargs = redis_client.connection_pool.connection_kwargs
    return {
        "redis_url": kwargs["host"],
        "redis_port": kwargs["port"],
        "redis_db": kwargs["db"],
        "redis_username": kwargs.get("username"),
        "redis_password": kwargs.get("password"),
        "database_url": database_schema,
        "batch_size": 10,
        # One-hour buckets: samples of a test never straddle a bucket boundary.
        "bucket_seconds": 3600,
        "timeout": 5,
    }


@pytest.fixture
def metrics_worker(metrics_worker_config: dict[str, Any]) -> Iterator[Any]:
    """Instantiate the metrics worker with the test config, on empty tables; its Redis and
    PostgreSQL connections are closed afterwards.

    Tables are emptied before the test only: at teardown a ``db_session`` of the same test
    may still hold a transaction that a TRUNCATE would wait for (``db_session`` empties them
    itself once it has rolled back).
    """
    from metrics_worker.worker import MetricsWorker

    worker = MetricsWorker(metrics_worker_config)
    with worker.engine.begin() as conn:
        _truncate_tables(conn.connection.dbapi_connection)
    yield worker
    worker.close()


# --- log worker -------------------------------------------------------------------------------


@pytest.fixture
def log_worker_config(redis_client: redis.Redis, elasticsearch_url: str) -> dict[str, Any]:
    """Configure log worker for testing (the seed's shape; Elasticsearch from the env)."""
    kwargs = redis_client.connection_pool.connection_kwargs
    return {
        "redis_url": kwargs["host"],
        "redis_port": kwargs["port"],
        "redis_db": kwargs["db"],
        "redis_username": kwargs.get("username"),  # the run's ACL user (None: the default)
        "redis_password": kwargs.get("password"),
        "elasticsearch_url": elasticsearch_url,
        "elasticsearch_index": ES_INDEX_PREFIX,
        "batch_size": 10,
        "timeout": 5,
    }


@pytest.fixture
def log_worker(log_worker_config: dict[str, Any]) -> Iterator[Any]:
    """Instantiate log worker with test config (closed after the test)."""
    from log_worker.worker import LogWorker

    worker = LogWorker(log_worker_config)
    yield worker
    worker.close()


@pytest.fixture
def managed_elasticsearch(elasticsearch_url: str) -> Iterator[Any]:
    """The local Elasticsearch the dev service manager runs (tests stop and start it).

    It is running again when the test ends, whatever happened. Needs ELASTICSEARCH_URL to
    point at the instance of ``killkrill dev services up`` run with the same
    KILLKRILL_DEV_HOME / KILLKRILL_DEV_PORT_OFFSET.
    """
    from killkrill.dev.elasticsearch_server import ElasticsearchServer

    server = ElasticsearchServer()
    given = urlsplit(elasticsearch_url)
    if server.pid() is None or given.port != server.port:
        pytest.skip(
            f"{elasticsearch_url} is not the Elasticsearch run by `killkrill dev services up` "
            "in this environment (export the same KILLKRILL_DEV_HOME/PORT_OFFSET); this test "
            "stops and restarts it"
        )
    yield server
    pid = server.pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    if not server.ready():
        if server.pid() is not None:
            server.stop()
        server.start()
