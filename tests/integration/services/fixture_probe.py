"""Run by test_service_manager.py in a child pytest (not collected on its own): shows which
server each seed fixture talks to, so the parent can check that the URLs it set are used."""

from __future__ import annotations

import os

import redis


def test_fixtures_use_the_given_servers(
    redis_client: redis.Redis, postgres_connection: object
) -> None:
    redis_client.set("probe", "ok")
    assert redis_client.get("probe") == b"ok"
    assert redis_client.config_get("port")["port"] == os.environ["EXPECT_REDIS_PORT"]
    with postgres_connection.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute("CREATE TABLE IF NOT EXISTS probe (v text)")
        cur.execute("INSERT INTO probe VALUES ('ok')")
        cur.execute("SELECT v FROM probe")
        assert cur.fetchall() == [("ok",)]
        cur.execute("SHOW port")
        assert cur.fetchone()[0] == os.environ["EXPECT_PG_PORT"]


def test_second_test_needing_redis(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
