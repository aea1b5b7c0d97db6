"""The log transformation: payload -> Elasticsearch document (pure, table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from killkrill.config.workers import LogTransformSettings
from killkrill.errors import LogParseError
from killkrill.workers.logs.transform import LogTransformer, action_line, document_id, index_name

NOW = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def transformer(**settings: object) -> LogTransformer:
    return LogTransformer(
        LogTransformSettings.model_validate(settings),
        pipeline="default",
        stream="logs-stream",
        index_prefix="logs",
        clock=lambda: NOW,
    )


def record(**fields: object) -> bytes:
    base: dict[str, object] = {
        "timestamp": "2024-01-06T12:00:00Z",
        "service": "api",
        "level": "info",
        "message": "hello",
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def test_document_has_index_id_and_enriched_source() -> None:
    doc = transformer(environment="prod", version="1.2.3").document("1-0", record(extra=1))
    assert doc.index == "logs-2024.01.06"
    assert doc.id == "default:logs-stream:1-0"
    assert doc.action == action_line(doc.index, doc.id)
    assert orjson.loads(doc.source) == {
        "timestamp": "2024-01-06T12:00:00.000000Z",
        "@timestamp": "2024-01-06T12:00:00.000000Z",
        "service": "api",
        "level": "info",
        "message": "hello",
        "extra": 1,
        "processed_at": "2025-03-04T05:06:07.890000Z",
        "environment": "prod",
        "version": "1.2.3",
    }


@pytest.mark.parametrize(
    ("timestamp", "at", "index"),
    [
        ("2024-01-06T12:00:00Z", "2024-01-06T12:00:00.000000Z", "logs-2024.01.06"),
        ("2024-01-06T23:30:00-02:00", "2024-01-07T01:30:00.000000Z", "logs-2024.01.07"),
        ("2024-01-06T00:30:00+01:00", "2024-01-05T23:30:00.000000Z", "logs-2024.01.05"),
        ("2024-01-06 12:00:00", "2024-01-06T12:00:00.000000Z", "logs-2024.01.06"),
        (1704542400, "2024-01-06T12:00:00.000000Z", "logs-2024.01.06"),
        (1704542400500, "2024-01-06T12:00:00.500000Z", "logs-2024.01.06"),
        ("2024-01-06T12:00:00.123456789Z", "2024-01-06T12:00:00.123456Z", "logs-2024.01.06"),
    ],
)
def test_timestamp_is_utc_and_picks_the_daily_index(timestamp: object, at: str, index: str) -> None:
    doc = transformer().document("1-0", record(timestamp=timestamp))
    assert orjson.loads(doc.source)["@timestamp"] == at
    assert doc.index == index


@pytest.mark.parametrize(
    ("level", "expected"),
    [("INFO", "info"), (" warning ", "warn"), ("CRITICAL", "fatal"), ("severe", "error"),
     ("notice", "info"), (10, "trace"), (60, "fatal")],
)  # fmt: skip
def test_level_is_normalised(level: object, expected: str) -> None:
    doc = transformer().document("1-0", record(level=level))
    assert orjson.loads(doc.source)["level"] == expected


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        (b"{not json", "", "not valid JSON"),
        (b"[1, 2]", "", "must be a JSON object"),
        (record(level=...), "level", "missing required field"),
        (record(timestamp=..., level=...), "timestamp", "missing required fields"),
        (record(level="loud"), "level", "not a known level"),
        (record(timestamp="yesterday"), "timestamp", "not an RFC 3339"),
        (record(service=""), "service", "must not be empty"),
        (record(message=5), "message", "must be a string"),
        (record(_id="x"), "_id", "must not start with '_'"),
    ],
)
def test_invalid_payloads_raise_log_parse_error(payload: bytes, field: str, reason: str) -> None:
    with pytest.raises(LogParseError) as err:
        transformer().document("1-0", payload)
    assert err.value.field == field
    assert reason in err.value.reason


def test_drops_and_renames() -> None:
    t = transformer(drop_fields=["password"], rename_fields={"msg_id": "message_id"})
    body = orjson.loads(t.document("1-0", record(password="x", msg_id="m", keep=True)).source)
    assert "password" not in body
    assert "msg_id" not in body
    assert body["message_id"] == "m"
    assert body["keep"] is True


def test_records_own_environment_and_version_are_kept() -> None:
    body = orjson.loads(transformer().document("1-0", record(environment="e", version="v")).source)
    assert (body["environment"], body["version"]) == ("e", "v")


@pytest.mark.parametrize(
    "settings",
    [{"drop_fields": ["level"]}, {"rename_fields": {"message": "msg"}},
     {"rename_fields": {"a": "@timestamp"}}, {"rename_fields": {"a": "_b"}}],
)  # fmt: skip
def test_required_fields_cannot_be_dropped_or_renamed(settings: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LogTransformSettings.model_validate(settings)


def test_helpers() -> None:
    assert index_name("logs-test", "2023-12-31T23:59:59.000000Z") == "logs-test-2023.12.31"
    assert document_id("p", "p:logs-stream", "5-1") == "p:p:logs-stream:5-1"


def test_action_line_escapes_unusual_ids_and_names() -> None:
    t = LogTransformer(
        LogTransformSettings(),
        pipeline="p",
        stream='we"ird',
        index_prefix="logs",
        clock=lambda: NOW,
    )
    doc = t.document("not-a-stream-id", record())
    assert orjson.loads(doc.action) == {
        "index": {"_index": "logs-2024.01.06", "_id": 'p:we"ird:not-a-stream-id'}
    }
    doc = t.document("5-7", record())
    assert orjson.loads(doc.action)["index"]["_id"] == 'p:we"ird:5-7'


@pytest.mark.parametrize(
    ("identity", "expected_id"),
    [
        (("logs-stream", "5-7"), "default:logs-stream:5-7"),  # its own (the usual case)
        (("logs-stream", "1-0"), "default:logs-stream:1-0"),  # a replay of entry 1-0
        (("other-stream", "1-0"), "default:other-stream:1-0"),  # first seen on another stream
    ],
)
def test_the_id_comes_from_the_entry_identity(identity: tuple[str, str], expected_id: str) -> None:
    """A replayed entry is indexed under the ``_id`` of the entry it replays."""
    [doc] = transformer().documents([(*identity, record())])
    assert not isinstance(doc, Exception)
    assert doc.id == expected_id
    assert orjson.loads(doc.action)["index"]["_id"] == expected_id
