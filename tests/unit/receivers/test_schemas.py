"""Record schemas: levels, timestamps, log records, metric samples (tables of cases)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from pydantic import ValidationError as PydanticValidationError

from killkrill.errors import LogParseError, ValidationError
from killkrill.schemas import (
    LogRecord,
    MetricSample,
    MetricType,
    RecordLimits,
    normalise_level,
    normalise_timestamp,
    parse_log_record,
    parse_metric_sample,
    parse_timestamp,
    validate_log,
    validate_metric,
)

LOG = {"timestamp": "2024-01-06T12:00:00Z", "service": "api", "level": "info", "message": "hi"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("info", "info"), ("INFO", "info"), (" Warning ", "warn"), ("WARN", "warn"),
        ("err", "error"), ("ERROR", "error"), ("CRITICAL", "fatal"), ("emerg", "fatal"),
        ("panic", "fatal"), ("notice", "info"), ("DEBUG", "debug"), ("fine", "debug"),
        ("TRACE", "trace"), ("severe", "error"), (30, "info"), (50, "error"), (60, "fatal"),
    ],
)  # fmt: skip
def test_level_aliases_normalise(given: object, expected: str) -> None:
    assert normalise_level(given) == expected


@pytest.mark.parametrize("given", ["loud", "", 7, None, 1.5, True, ["info"]])
def test_unknown_levels_are_refused_with_the_accepted_list(given: object) -> None:
    with pytest.raises(ValueError, match="trace, debug, info, warn, error, fatal"):
        normalise_level(given)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2024-01-06T12:00:00Z", "2024-01-06T12:00:00.000000Z"),
        ("2024-01-06T14:00:00+02:00", "2024-01-06T12:00:00.000000Z"),
        ("2024-01-06 12:00:00", "2024-01-06T12:00:00.000000Z"),
        ("2024-01-06T12:00:00.123456789Z", "2024-01-06T12:00:00.123456Z"),
        ("2024-01-06T12:00:00.000000Z", "2024-01-06T12:00:00.000000Z"),
        (1704542400, "2024-01-06T12:00:00.000000Z"),
        (1704542400.5, "2024-01-06T12:00:00.500000Z"),
        (1704542400123, "2024-01-06T12:00:00.123000Z"),
        (1704542400123456, "2024-01-06T12:00:00.123456Z"),
        (1704542400123456789, "2024-01-06T12:00:00.123456Z"),
        ("1704542400", "2024-01-06T12:00:00.000000Z"),
    ],
)
def test_timestamps_normalise_to_utc_rfc3339(given: object, expected: str) -> None:
    assert normalise_timestamp(given) == expected


@pytest.mark.parametrize(
    "given",
    ["yesterday", "", "2024-13-01T00:00:00Z", "2024-02-30T00:00:00Z", "1969-12-31T23:59:59Z",
     -5, math.nan, math.inf, True, None, {"t": 1}, "2024-01-06T12:00:00.000000Z".replace("01", "13")],
)  # fmt: skip
def test_bad_timestamps_say_what_to_send(given: object) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        normalise_timestamp(given)


def test_parse_timestamp_returns_aware_utc() -> None:
    dt = parse_timestamp("2024-01-06T14:00:00+02:00")
    assert dt == datetime(2024, 1, 6, 12, tzinfo=UTC)
    assert dt.tzinfo is UTC


def test_validate_log_keeps_extra_fields_and_normalises() -> None:
    rec = validate_log({**LOG, "level": "WARNING", "trace_id": "abc", "http": {"status": 200}})
    assert rec == {**LOG, "timestamp": "2024-01-06T12:00:00.000000Z", "level": "warn",
                   "trace_id": "abc", "http": {"status": 200}}  # fmt: skip


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ({k: v for k, v in LOG.items() if k != "service"}, "service", "missing required"),
        ({**LOG, "service": ""}, "service", "must not be empty"),
        ({**LOG, "service": 5}, "service", "must be a string"),
        ({**LOG, "message": {"a": 1}}, "message", "must be a string"),
        ({**LOG, "timestamp": "soon"}, "timestamp", "RFC 3339"),
        ({**LOG, "level": "shouty"}, "level", "not a known level"),
        ({**LOG, "_id": "x"}, "_id", "reserved by Elasticsearch"),
        ({**LOG, "": "x"}, "", "non-empty"),
        ([LOG], "", "must be a JSON object"),
    ],
)
def test_validate_log_names_the_field(record: Any, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_log(record)
    assert info.value.field == field
    assert words in info.value.reason


def test_log_limits_name_the_setting() -> None:
    limits = RecordLimits(max_message_length=3, max_service_length=2, max_fields=5)
    with pytest.raises(ValidationError, match=r"limits\.max_service_length"):
        validate_log(dict(LOG), limits)
    with pytest.raises(ValidationError, match=r"limits\.max_message_length"):
        validate_log({**LOG, "service": "a", "message": "long"}, limits)
    with pytest.raises(ValidationError, match=r"limits\.max_fields"):
        validate_log({**LOG, "service": "a", "message": "m", "x": 1, "y": 2}, limits)


def test_fast_path_and_model_agree() -> None:
    raw = {**LOG, "timestamp": 1704542400123, "level": "Err", "extra": [1, 2]}
    fast = orjson.loads(orjson.dumps(validate_log(dict(raw))))
    model = LogRecord.model_validate(raw)
    assert orjson.loads(model.to_json()) == fast
    assert model.level == "error"


def test_parse_log_record_raises_log_parse_error() -> None:
    assert parse_log_record(orjson.dumps(LOG)).service == "api"
    with pytest.raises(LogParseError, match="not valid JSON"):
        parse_log_record(b"{nope")
    with pytest.raises(LogParseError) as info:
        parse_log_record(b'{"service": "a"}')
    assert info.value.field == "timestamp"


def test_validate_metric_defaults_and_normalises() -> None:
    sample = validate_metric({"name": "up", "value": "1"}, now="2024-01-06T12:00:00.000000Z")
    assert sample == {"name": "up", "value": 1.0, "labels": {},
                      "timestamp": "2024-01-06T12:00:00.000000Z", "type": "untyped"}  # fmt: skip


@pytest.mark.parametrize(
    ("sample", "field", "words"),
    [
        ({"value": 1}, "name", "missing required"),
        ({"name": "1up", "value": 1}, "name", "not a valid Prometheus metric name"),
        ({"name": "a-b", "value": 1}, "name", "not a valid Prometheus metric name"),
        ({"name": "up"}, "value", "missing required"),
        ({"name": "up", "value": "NaN"}, "value", "must be finite"),
        ({"name": "up", "value": math.inf}, "value", "must be finite"),
        ({"name": "up", "value": True}, "value", "must be a number"),
        ({"name": "up", "value": "many"}, "value", "is not a number"),
        ({"name": "up", "value": 1, "labels": ["a"]}, "labels", "object of string"),
        ({"name": "up", "value": 1, "labels": {"1a": "x"}}, "labels.1a", "not a valid label"),
        ({"name": "up", "value": 1, "labels": {"a": 1}}, "labels.a", "must be strings"),
        ({"name": "up", "value": 1, "labels": {"a": "x\x00"}}, "labels.a", "NUL character"),
        ({"name": "up", "value": 1, "type": "meter"}, "type", "not a metric type"),
        ({"name": "up", "value": 1, "timestamp": "later"}, "timestamp", "RFC 3339"),
        ({"name": "up", "value": 1, "host": "a"}, "host", "unknown field"),
    ],
)
def test_validate_metric_names_the_field(sample: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_metric(sample)
    assert info.value.field == field
    assert words in info.value.reason


def test_metric_model_round_trip() -> None:
    model = parse_metric_sample(
        b'{"name":"http_requests_total","value":5,"labels":{"code":"200"},'
        b'"timestamp":1704542400000,"type":"COUNTER"}'
    )
    assert model.type is MetricType.COUNTER
    assert model.timestamp == datetime(2024, 1, 6, 12, tzinfo=UTC)
    assert orjson.loads(model.to_json())["timestamp"] == "2024-01-06T12:00:00.000000Z"
    assert MetricSample(name="up", value=1).labels == {}
    with pytest.raises(PydanticValidationError, match="NUL character"):
        MetricSample(name="up", value=1, labels={"a": "x\x00"})


NOW = datetime(2025, 3, 1, 12, tzinfo=UTC)
DAY = 86_400.0


@pytest.mark.parametrize(
    ("limits", "timestamp", "setting"),
    [
        (RecordLimits(max_future_seconds=DAY), "2025-03-02T11:59:59Z", None),
        (RecordLimits(max_future_seconds=DAY), "2025-03-02T12:00:00Z", None),  # at the bound
        (RecordLimits(max_future_seconds=DAY), "2025-03-02T12:00:00.000001Z", "max_future"),
        (RecordLimits(max_future_seconds=DAY), "2100-01-01T00:00:00Z", "max_future"),
        (RecordLimits(max_future_seconds=DAY), "1971-01-01T00:00:00Z", None),  # past: off
        (RecordLimits(max_future_seconds=0), "2025-03-01T12:00:01Z", "max_future"),
        (RecordLimits(max_past_seconds=DAY), "2025-02-28T12:00:00Z", None),
        (RecordLimits(max_past_seconds=DAY), "2025-02-28T11:59:59Z", "max_past"),
        (RecordLimits(max_past_seconds=DAY), "9999-01-01T00:00:00Z", None),  # future: off
        (RecordLimits(max_future_seconds=1e30), "9999-12-31T00:00:00Z", None),  # no overflow
        (RecordLimits(max_past_seconds=1e30), "1970-01-01T00:00:00Z", None),
        (RecordLimits(), "2100-01-01T00:00:00Z", None),  # the workers' UNLIMITED: no window
    ],
)
def test_time_window(limits: RecordLimits, timestamp: str, setting: str | None) -> None:
    window = limits.window(NOW)
    records = (
        lambda: validate_log({**LOG, "timestamp": timestamp}, limits, window=window),
        lambda: validate_metric({"name": "up", "value": 1, "timestamp": timestamp}, limits,
                                window=window),
    )  # fmt: skip
    for validate in records:
        if setting is None:
            validate()
            continue
        with pytest.raises(ValidationError) as info:
            validate()
        assert info.value.field == "timestamp"
        assert f"limits.{setting}_seconds" in info.value.reason


def test_time_window_defaults_to_the_current_clock() -> None:
    limits = RecordLimits(max_future_seconds=60)
    with pytest.raises(ValidationError, match="more than 1 minute"):
        validate_log({**LOG, "timestamp": "2999-01-01T00:00:00Z"}, limits)
    validate_log(dict(LOG), limits)
    sample = validate_metric({"name": "up", "value": 1}, limits)  # defaulted: now, inside
    assert sample["timestamp"].endswith("Z")


def test_record_limits_come_from_every_setting() -> None:
    from killkrill.config import RecordLimitSettings
    from killkrill.receivers.limits import record_limits

    settings = RecordLimitSettings(max_labels=3, max_past_seconds=5)
    limits = record_limits(settings)
    assert {f: getattr(limits, f) for f in RecordLimits.__dataclass_fields__} == (
        settings.model_dump()
    )
