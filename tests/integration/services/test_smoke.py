"""The main job's smoke check and the schema migration, against the real services."""

from __future__ import annotations

import pytest
import redis

from killkrill.db.migrate import current, upgrade
from killkrill.dev.smoke import run_pipeline_smoke, run_smoke


@pytest.mark.requires_db
def test_smoke_round_trips_data_through_every_service(
    redis_url: str, postgres_url: str, elasticsearch_url: str, redis_client: redis.Redis
) -> None:
    lines = list(
        run_smoke(
            {
                "REDIS_URL": redis_url,
                "TEST_DATABASE_URL": postgres_url,
                "ELASTICSEARCH_URL": elasticsearch_url,
            }
        )
    )
    assert [line.split(":")[0] for line in lines] == ["redis", "postgres", "elasticsearch"]
    assert all(" ok (" in line for line in lines)
    assert redis_client.keys("smoke-*") == []  # it cleans up after itself


@pytest.mark.requires_db
def test_migrations_reach_head_and_are_idempotent(postgres_url: str) -> None:
    upgrade(postgres_url)
    head = current(postgres_url)
    assert head is not None
    upgrade(postgres_url)
    assert current(postgres_url) == head


@pytest.mark.requires_db
@pytest.mark.slow
def test_pipeline_smoke_runs_sample_data_end_to_end(
    redis_url: str,
    postgres_url: str,
    elasticsearch_url: str,
    redis_client: redis.Redis,
    elasticsearch_client: object,
    database_schema: str,
    es_index_prefix: str,
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "TEST_DATABASE_URL": postgres_url,
        "ELASTICSEARCH_URL": elasticsearch_url,
        "KILLKRILL_ELASTICSEARCH__INDEX_PREFIX": es_index_prefix,
    }
    lines = list(run_pipeline_smoke(env, logs=50))
    assert lines[0].startswith("pipeline: receivers, log worker and metrics worker up")
    assert "logs: 50 sent over HTTP, 50 indexed once" in lines[1]
    assert "count 5, sum 510" in lines[3]
    assert lines[-1].startswith("pipeline: stopped cleanly")
    assert redis_client.xlen("logs-stream") == 0
