"""Parsing stream entries into samples: the shared schema's rules, and the reasons given."""

from __future__ import annotations

import pytest

from killkrill.errors import ValidationError
from killkrill.workers.metrics.sample import parse_sample


def test_valid_sample_is_normalised() -> None:
    got = parse_sample(
        b'{"name": "http_requests_total", "value": "3", "labels": {"b": "2", "a": "1"},'
        b' "timestamp": 1704542400000, "type": "COUNTER"}'
    )
    assert got.name == "http_requests_total"
    assert got.value == 3.0
    assert got.labels == (("a", "1"), ("b", "2"))
    assert got.timestamp == 1704542400.0
    assert got.type == "counter"


def test_defaults() -> None:
    got = parse_sample(b'{"name": "up", "value": 1, "timestamp": "2024-01-06T12:00:00Z"}')
    assert (got.labels, got.type, got.timestamp) == ((), "untyped", 1704542400.0)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "no data field"),
        (b"{not json", "not valid JSON"),
        (b'{"name": "x", "value": NaN}', "not valid JSON"),
        (b'{"name": "x", "value": "NaN"}', "must be finite"),
        (b'{"name": "x", "value": "Infinity"}', "must be finite"),
        (b'{"value": 1}', "missing required field name"),
        (b'{"name": "x"}', "missing required field value"),
        (b'{"name": "x", "value": "abc"}', "'abc' is not a number"),
        (b'{"name": "x", "value": true}', "not a boolean"),
        (b'{"name": "1x", "value": 1}', "not a valid Prometheus metric name"),
        (b'{"name": "x", "value": 1, "labels": {"a": 1}}', "label values must be strings"),
        (b'{"name": "x", "value": 1, "labels": {"1a": "v"}}', "not a valid label name"),
        (b'{"name": "x", "value": 1, "timestamp": "yesterday"}', "not an RFC 3339"),
        (b'{"name": "x", "value": 1, "type": "meter"}', "is not a metric type"),
        (b'{"name": "x", "value": 1, "host": "a"}', "unknown field host"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
def test_invalid_samples_say_why(payload: bytes, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_sample(payload)
    assert reason in str(info.value)
