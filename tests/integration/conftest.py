"""Fixtures of the integration-testing guide, against real Redis, PostgreSQL, Elasticsearch.

Service URLs come from ``REDIS_URL``, ``TEST_DATABASE_URL`` and ``ELASTICSEARCH_URL`` with the
guide's defaults. Start local services with ``make services`` (or
``killkrill dev services up && eval "$(killkrill dev services env)"``).

Isolation: every fixture that hands out a service cleans it before *and* after the test
(Redis: the test database is flushed; Elasticsearch: every ``logs-*``/``metrics-*``/test index
is deleted; PostgreSQL: every table but Alembic's is truncated), so tests pass in any order.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis
from elasticsearch import Elasticsearch
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).parent))  # shared helpers, e.g. polling.py

START_HINT = (
    "start them with `make services` (or `killkrill dev services up` and "
    '`eval "$(killkrill dev services env)"`), or point REDIS_URL / TEST_DATABASE_URL / '
    "ELASTICSEARCH_URL at running instances"
)

# Indices the tests may create; all of them are removed before and after each test.
TEST_INDEX_PATTERNS = "logs-*,metrics-*,*-test-*"


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


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis URL from environment."""
    return _require("Redis", os.getenv("REDIS_URL", "redis://localhost:6379/1"), 6379)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """PostgreSQL URL for the test database."""
    url = os.getenv("TEST_DATABASE_URL", "postgresql://test:test@localhost/killkrill_test")
    return _require("PostgreSQL", url, 5432)


@pytest.fixture(scope="session")
def elasticsearch_url() -> str:
    """Elasticsearch URL for the test instance."""
    return _require("Elasticsearch", os.getenv("ELASTICSEARCH_URL", "http://localhost:9200"), 9200)


# --- clients, each clean before and after the test ---------------------------------------------


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """Fresh Redis client on an empty test database."""
    client = redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


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
    found = client.options(ignore_status=404).indices.get(
        index=TEST_INDEX_PATTERNS, expand_wildcards="open,closed", allow_no_indices=True
    )
    names = [name for name in found.body if not name.startswith(".")] if found else []
    if names:
        client.indices.delete(index=",".join(names), ignore_unavailable=True)


@pytest.fixture
def elasticsearch_client(elasticsearch_url: str) -> Iterator[Elasticsearch]:
    """Elasticsearch client for the test instance, with no test indices left over."""
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
    return {
        "redis_url": redis_client.connection_pool.connection_kwargs["host"],
        "redis_port": redis_client.connection_pool.connection_kwargs["port"],
        "redis_db": redis_client.connection_pool.connection_kwargs["db"],
        "elasticsearch_url": elasticsearch_url,
        "elasticsearch_index": "logs-test",
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
