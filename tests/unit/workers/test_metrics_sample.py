"""Parsing stream entries into samples: the shared schema's rules, and the reasons given."""

from __future__ import annotations

import copy
import math
from datetime import datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from killkrill.errors import ValidationError
from killkrill.schemas import validate_metric
from killkrill.workers.metrics.sample import (
    SampleParser,
    _fast_sample,
    _validated_sample,
    parse_sample,
)


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


# --- the fast path for canonical records -----------------------------------------------------


def _full(obj: dict[str, Any]) -> Any:
    """The full validation's answer (the sample, or the error text)."""
    try:
        return _validated_sample(copy.deepcopy(obj))
    except ValidationError as exc:
        return f"error: {exc}"


def test_a_receiver_record_takes_the_fast_path_with_the_same_result() -> None:
    record = validate_metric(
        {"name": "up", "value": 1, "labels": {"b": "2", "a": "1"}, "timestamp": 1704542400.5}
    )
    assert record["timestamp"] == "2024-01-06T12:00:00.500000Z"
    fast = _fast_sample(copy.deepcopy(record))
    assert fast is not None
    assert fast == _full(record) == parse_sample(orjson.dumps(record))
    assert fast.labels == (("a", "1"), ("b", "2"))
    assert fast.timestamp == 1704542400.5


@pytest.mark.parametrize(
    "obj",
    [
        {"name": "x", "value": "3"},  # numeric string value
        {"name": "x", "value": 1, "type": "GAUGE"},  # upper-case type
        {"name": "x", "value": 1, "timestamp": "2024-01-06T14:00:00.5+02:00"},  # offset
        {"name": "x", "value": 1, "timestamp": "1704542400000"},  # epoch ms as a string
        {"name": "x", "value": 1, "timestamp": "2024-01-06T12:00:00Z"},  # no fraction
        {"name": "x", "value": 1},  # no timestamp: "now", as the full path does it
    ],
)
def test_other_forms_fall_back_to_full_validation(obj: dict[str, Any]) -> None:
    assert _fast_sample(copy.deepcopy(obj)) is None
    assert not isinstance(_full(obj), str)  # valid all the same


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"name": "x", "value": 1, "timestamp": "2024-02-30T00:00:00.000000Z"}, "RFC 3339"),
        ({"name": "x", "value": 1, "timestamp": "2024-01-06T25:00:00.000000Z"}, "RFC 3339"),
        ({"name": "x", "value": 1, "timestamp": "2024-01-06T12:00:00.00000٣Z"}, "RFC 3339"),
        ({"name": "1x", "value": 1, "labels": {}, "timestamp": 1.0, "type": "gauge"}, "name"),
        ({"name": "x", "value": 1, "labels": {"a": 1}, "timestamp": 1.0, "type": "gauge"}, "str"),
        ({"name": "x", "value": True, "labels": {}, "timestamp": 1.0, "type": "gauge"}, "bool"),
        ({"name": "x", "value": 1, "labels": {}, "timestamp": 1.0, "host": "a"}, "unknown"),
        ({"name": "x", "value": 1, "labels": {}, "timestamp": -1.0, "type": "gauge"}, "1970"),
        ({"name": "x", "value": 1, "labels": {}, "timestamp": 1.0, "type": ["gauge"]}, "type"),
        (
            {"name": "x", "value": 1, "labels": {"a": "b\x00c"}, "timestamp": 1.0, "type": "gauge"},
            "NUL character",  # jsonb cannot hold it: refused before PostgreSQL sees it
        ),
    ],
)
def test_invalid_records_never_pass_the_fast_path(obj: dict[str, Any], reason: str) -> None:
    assert _fast_sample(copy.deepcopy(obj)) is None
    with pytest.raises(ValidationError, match=reason):
        parse_sample(orjson.dumps(obj))


def test_parser_memos_are_bounded_lrus() -> None:
    """Each memo keeps the ``cache_size`` most recently used answers; a forgotten one is
    worked out again, with the same result."""
    parser = SampleParser(cache_size=2)
    for name in ("a", "b", "a", "c"):  # "a" used again before "c" arrives: "b" goes
        sample = parser.parse(orjson.dumps({"name": name, "value": 1, "timestamp": 1.0}))
        assert sample.name == name
    assert list(parser.names) == ["a", "c"]
    stamps = [f"2024-01-06T12:00:0{s}.000000Z" for s in (1, 2, 3)]
    for ts in stamps:
        parser.parse(orjson.dumps({"name": "x", "value": 1, "timestamp": ts}))
    assert list(parser.seconds) == ["2024-01-06T12:00:02", "2024-01-06T12:00:03"]
    again = parser.parse(orjson.dumps({"name": "b", "value": 2, "timestamp": stamps[0]}))
    assert again == parse_sample(orjson.dumps({"name": "b", "value": 2, "timestamp": stamps[0]}))
    labels = {f"l{i}": "v" for i in range(5)}
    parser.parse(orjson.dumps({"name": "x", "value": 1, "labels": labels, "timestamp": 1.0}))
    assert len(parser.label_names) == 2


_label_names = st.sampled_from(["a", "job", "instance", "_x", "1bad", "le", "a-b", ""])
_canonical = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
    lambda d: d.isoformat(timespec="microseconds") + "Z"
)
_timestamps = st.one_of(
    _canonical,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from(
        [
            "2024-01-06T12:00:00Z",
            "2024-01-06T12:00:00.123456+01:00",
            "0000-01-01T00:00:00.000000Z",
            "2024-13-01T00:00:00.000000Z",
            "1704542400",
            "",
            "x" * 27,
            None,
        ]
    ),
)
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.booleans(),
    st.sampled_from(["1.5", "NaN", "abc", None]),
)
_records = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(
            st.sampled_from(["up", "http_requests_total", "a:b", "NULL", "1x", ""]), st.integers()
        ),
        "value": _values,
        "labels": st.one_of(
            st.none(),
            st.dictionaries(
                _label_names, st.one_of(st.text(max_size=5), st.integers()), max_size=3
            ),
            st.sampled_from([[], "a=b"]),
        ),
        "timestamp": _timestamps,
        "type": st.one_of(
            st.none(), st.sampled_from(["gauge", "counter", "GAUGE", "meter", ""]), st.integers()
        ),
        "host": st.just("extra"),
    },
)


_canonical_shape = st.from_regex(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", fullmatch=True)
_likely_valid = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["up", "http_requests_total", "a:b", "NULL"]),
        "value": st.one_of(st.floats(), st.integers(min_value=-(2**63), max_value=2**64 - 1)),
        "labels": st.dictionaries(
            st.sampled_from(["a", "job", "instance", "_x"]), st.text(max_size=5), max_size=3
        ),
        "timestamp": st.one_of(
            _canonical,
            _canonical_shape,
            st.floats(min_value=0),
            st.integers(min_value=0, max_value=2**64 - 1),
        ),
    },
    optional={"type": st.sampled_from(["gauge", "counter", "untyped", "GAUGE"])},
)


@settings(max_examples=1000, deadline=None)
@given(_likely_valid)
def test_fast_path_agrees_with_full_validation_on_likely_valid_records(obj: dict[str, Any]) -> None:
    fast = _fast_sample(copy.deepcopy(obj))
    if fast is not None:
        assert fast == _full(obj)


@settings(max_examples=2000, deadline=None)
@given(_records)
def test_fast_path_agrees_with_full_validation(obj: dict[str, Any]) -> None:
    """Whenever the fast path answers, the full validation gives the very same sample."""
    fast = _fast_sample(copy.deepcopy(obj))
    if fast is None:
        return
    full = _full(obj)
    assert fast == full
    assert math.isfinite(fast.value)
