"""The one seed-config translator of both workers, and the bound on ``claim_idle_ms`` (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from killkrill.config import LogWorkerSettings, MetricsWorkerSettings, RetrySettings
from killkrill.config.workers import pending_bound_seconds
from killkrill.errors import ConfigError
from killkrill.workers.logs.settings import settings_from_seed as log_settings
from killkrill.workers.metrics.settings import settings_from_seed as metrics_settings

TRANSLATORS = [pytest.param(log_settings, id="logs"), pytest.param(metrics_settings, id="metrics")]


@pytest.mark.parametrize("translate", TRANSLATORS)
@pytest.mark.parametrize(
    ("key", "value", "where"),
    [
        ("consumer_name", "c1", ("consumer", "name")),
        ("consumer", "c1", ("consumer", "name")),
        ("consumer_group", "g1", ("consumer", "group")),
        ("group", "g1", ("consumer", "group")),
        ("batch_size", 7, ("consumer", "batch_size")),
        ("in_flight", 3, ("consumer", "in_flight")),
        ("max_deliveries", 4, ("consumer", "max_deliveries")),
        ("max_retries", 0, ("retry", "max_retries")),
        ("max_backoff", 2.5, ("retry", "max_backoff")),
        ("pipeline", "shop", ("pipeline",)),
        ("ops_port", 0, ("ops", "port")),
    ],
)
def test_both_workers_understand_the_common_keys_in_either_spelling(
    translate: Any, key: str, value: object, where: tuple[str, ...]
) -> None:
    node: Any = translate({key: value})
    for part in where:
        node = getattr(node, part)
    assert node == value


@pytest.mark.parametrize("translate", TRANSLATORS)
def test_redis_host_port_db_and_unknown_keys(translate: Any) -> None:
    assert translate(
        {"redis_url": "h", "redis_port": 1, "redis_db": 2}
    ).redis.url.get_secret_value() == ("redis://h:1/2")
    with pytest.raises(ConfigError, match=r"unknown .* setting.*consumer_nmae"):
        translate({"consumer_nmae": "x"})


@pytest.mark.parametrize(
    ("retry", "attempt", "redis", "expected"),
    [
        (RetrySettings(max_retries=0), 1.0, 0.5, 2 * 1.5),
        (RetrySettings(max_retries=3), 60.0, 10.0, 2 * (4 * 70 + 0.2 + 0.4 + 0.8)),
        (RetrySettings(max_retries=2, initial_backoff=5, max_backoff=6), 1, 0, 2 * (3 + 5 + 6)),
    ],
)
def test_pending_bound(retry: RetrySettings, attempt: float, redis: float, expected: float) -> None:
    bound = pending_bound_seconds(retry, attempt_seconds=attempt, redis_seconds=redis)
    assert bound == pytest.approx(expected)


@pytest.mark.parametrize(
    ("model", "timeout_path", "timeout_field"),
    [
        (LogWorkerSettings, "elasticsearch", "request_timeout"),
        (MetricsWorkerSettings, "aggregation", "statement_timeout"),
    ],
)
def test_claim_idle_is_derived_when_unset_and_refused_below_the_bound(
    model: Any, timeout_path: str, timeout_field: str
) -> None:
    fast = {
        timeout_path: {timeout_field: 1.0},
        "redis": {"socket_timeout": 1.0},
        "retry": {"max_retries": 1, "initial_backoff": 0.5},
    }
    bound_ms = 2 * (2 * (2 * 1.0 + 1.0) + 0.5) * 1000  # two batches, 2 attempts, one wait
    assert model.validate_settings(fast).consumer.claim_idle_ms == 60_000  # the floor
    slow = {**fast, timeout_path: {timeout_field: 60.0}}
    derived = model.validate_settings(slow).consumer.claim_idle_ms
    assert derived == 2 * (2 * (2 * 60 + 1) + 0.5) * 1000 + 10_000
    ok = model.validate_settings({**fast, "consumer": {"claim_idle_ms": int(bound_ms) + 1}})
    assert ok.consumer.claim_idle_ms == bound_ms + 1
    with pytest.raises(ConfigError) as err:
        model.validate_settings({**fast, "consumer": {"claim_idle_ms": int(bound_ms)}})
    message = str(err.value)
    for name in ("consumer.claim_idle_ms", f"{timeout_path}.{timeout_field}", "retry.max_retries"):
        assert name in message


@pytest.mark.parametrize("model", [LogWorkerSettings, MetricsWorkerSettings])
def test_a_blocking_read_ends_before_the_redis_timeout(model: Any) -> None:
    assert model.validate_settings({}).consumer.block_ms == 1000
    short = {"redis": {"socket_timeout": 1.0}}
    assert model.validate_settings(short).consumer.block_ms == 500  # derived when unset
    with pytest.raises(ConfigError, match=r"consumer.block_ms \(1000 ms\).*redis.socket_timeout"):
        model.validate_settings({**short, "consumer": {"block_ms": 1000}})
