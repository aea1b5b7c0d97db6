"""The retry schedule: bounded whatever the attempt number (pure)."""

from __future__ import annotations

import pytest

from killkrill.workers.retry import Backoff


@pytest.mark.parametrize(
    ("backoff", "attempt", "expected"),
    [
        (Backoff(base=0.2, factor=2, cap=10), 1, 0.2),
        (Backoff(base=0.2, factor=2, cap=10), 3, 0.8),
        (Backoff(base=0.2, factor=2, cap=10), 7, 10.0),
        (Backoff(base=0.2, factor=2, cap=10), 1_100, 10.0),  # 2**1099 overflowed a float
        (Backoff(base=0.2, factor=2, cap=10), 10**6, 10.0),
        (Backoff(base=1, factor=10, cap=60), 10**6, 60.0),
        (Backoff(base=0.5, factor=1, cap=10), 10**6, 0.5),
        (Backoff(base=20, factor=2, cap=10), 1, 10.0),
        (Backoff(base=0, factor=2, cap=10), 10**6, 0.0),
        (Backoff(base=0.2, factor=2, cap=10), 0, 0.2),
    ],
)
def test_ceiling_is_capped_for_any_attempt(backoff: Backoff, attempt: int, expected: float) -> None:
    assert backoff.ceiling(attempt) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [1, 2, 50, 10**6, 10**12])
def test_delay_is_jittered_below_the_ceiling(attempt: int) -> None:
    backoff = Backoff(base=0.2, factor=2, cap=10, jitter=0.5)
    for _ in range(50):
        assert backoff.ceiling(attempt) / 2 <= backoff.delay(attempt) <= backoff.ceiling(attempt)


@pytest.mark.parametrize(
    ("backoff", "retries", "expected"),
    [
        (Backoff(base=0.2, factor=2, cap=10), 0, 0.0),
        (Backoff(base=0.2, factor=2, cap=10), 3, 0.2 + 0.4 + 0.8),
        (Backoff(base=0.2, factor=2, cap=1), 5, 0.2 + 0.4 + 0.8 + 1 + 1),
        (Backoff(base=1, factor=2, cap=10), 10**6, 1 + 2 + 4 + 8 + 10 * (10**6 - 4)),
        (Backoff(base=0.5, factor=1, cap=10), 4, 2.0),
    ],
)
def test_total_bounds_the_waits_of_a_batch(backoff: Backoff, retries: int, expected: float) -> None:
    assert backoff.total(retries) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [1_100, 10**6])
def test_delay_of_a_days_long_outage_does_not_overflow(attempt: int) -> None:
    """``2.0 ** 1099`` raised OverflowError, which ended the lane and the process."""
    assert 5.0 <= Backoff(base=0.2, factor=2, cap=10, jitter=0.5).delay(attempt) <= 10.0
