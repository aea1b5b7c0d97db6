"""The operator's metrics: every outcome is exposed from the start, each reconcile counted."""

from __future__ import annotations

from prometheus_client import generate_latest

from killkrill.operator.metrics import ERROR, OK, PROBLEM, OperatorMetrics


def test_outcomes_are_counted_and_timed() -> None:
    metrics = OperatorMetrics()
    text = generate_latest(metrics.registry).decode()
    for outcome in (OK, PROBLEM, ERROR):
        assert f'killkrill_operator_reconciles_total{{outcome="{outcome}"}} 0.0' in text
    metrics.observe(OK, 0.2)
    metrics.observe(PROBLEM, 0.3)
    text = generate_latest(metrics.registry).decode()
    assert 'killkrill_operator_reconciles_total{outcome="ok"} 1.0' in text
    assert 'killkrill_operator_reconciles_total{outcome="problem"} 1.0' in text
    assert "killkrill_operator_reconcile_duration_seconds_count 2.0" in text
    assert "process_resident_memory_bytes" in text


def test_two_operators_in_one_process_do_not_collide() -> None:
    first, second = OperatorMetrics(), OperatorMetrics()
    first.observe(ERROR, 1.0)
    assert 'outcome="error"} 0.0' in generate_latest(second.registry).decode()
