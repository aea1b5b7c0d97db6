"""The suite's own connections log in with secrets of this run (so the leak guard's search
for them means something): a Redis ACL user and a PostgreSQL role, each with a random
password, made for the run and removed at its end (see ``tests/integration/conftest.py``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import psycopg2
import pytest
import redis
from leak_guard import LeakGuard
from run_names import PG_SCHEMA, RUN_ID

from killkrill.streams.connection import sync_client
from killkrill.workers.logs.settings import settings_from_seed


def test_redis_fixtures_log_in_as_the_runs_acl_user(
    redis_url: str,
    redis_client: redis.Redis,
    log_worker_config: dict[str, Any],
    leak_guard: LeakGuard,
) -> None:
    user = f"kk-test-{RUN_ID}"
    if urlsplit(redis_url).username != user:
        pytest.skip("this Redis refused ACL SETUSER: the run logs in as REDIS_URL says")
    assert redis_client.acl_whoami() == user
    # The seed's host/port/db config carries the login too, so the workers use it.
    worker_client = sync_client(settings_from_seed(log_worker_config).redis.url)
    try:
        assert worker_client.acl_whoami() == user
    finally:
        worker_client.close()
    assert leak_guard.watches(urlsplit(redis_url).password or "")
    assert "Redis ACL password of the test run" in leak_guard.labels


def test_postgres_fixtures_log_in_as_the_runs_role(
    postgres_url: str, leak_guard: LeakGuard
) -> None:
    if urlsplit(postgres_url).username != PG_SCHEMA:
        pytest.skip("this PostgreSQL role may not CREATE ROLE: the run logs in as given")
    conn = psycopg2.connect(postgres_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, current_schema()")
            assert cur.fetchone() == (PG_SCHEMA, PG_SCHEMA)
    finally:
        conn.close()
    assert leak_guard.watches(urlsplit(postgres_url).password or "")
