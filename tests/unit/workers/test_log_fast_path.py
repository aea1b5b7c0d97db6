"""The log worker's fast path for canonical records: same result as the full validation.

:func:`is_canonical_log` lets records written by our receivers skip
:func:`validate_log`; these tests pin that it only says "yes" when the full validation
would accept the record and change nothing, and that everything else still goes the long
way (normalised, or rejected with ``LogParseError``).
"""

from __future__ import annotations

import copy
import gc
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from killkrill.config.workers import LogTransformSettings
from killkrill.errors import LogParseError, ValidationError
from killkrill.schemas import is_canonical_log, validate_log
from killkrill.schemas.timestamps import is_canonical_timestamp, normalise_timestamp
from killkrill.workers.gctune import tune_for_streaming
from killkrill.workers.logs.transform import LogTransformer

CANONICAL = {
    "timestamp": "2024-01-06T12:00:00.000000Z",
    "service": "api",
    "level": "info",
    "message": "hello",
}

TIMESTAMP_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def transformer() -> LogTransformer:
    return LogTransformer(
        LogTransformSettings(), pipeline="default", stream="logs-stream", index_prefix="logs"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-06T12:00:00.000000Z", True),
        ("2024-02-29T23:59:59.999999Z", True),
        ("2024-13-06T12:00:00.000000Z", False),  # month 13
        ("2023-02-29T12:00:00.000000Z", False),  # not a leap year
        ("2024-01-06T12:00:00Z", False),  # valid, but not the canonical form
        ("2024-01-06T12:00:00.000000+00:00", False),
        ("2024-W01-1T12:00:00.000000Z", False),  # an ISO week date fromisoformat accepts
        ("2024-01-06T12:00:00.00000٣Z", False),  # a non-ASCII digit
        (1704542400, False),
        (None, False),
    ],
)
def test_canonical_timestamp(value: object, expected: bool) -> None:
    assert is_canonical_timestamp(value) is expected
    if expected:
        assert normalise_timestamp(value) is value


def test_a_receiver_written_record_is_canonical() -> None:
    assert is_canonical_log({**CANONICAL, "extra": {"_nested": "ok"}, "n": 1})


@pytest.mark.parametrize(
    "change",
    [
        {"level": "INFO"},
        {"level": "warning"},
        {"level": 30},
        {"level": ["info"]},  # unhashable: must not raise
        {"timestamp": "2024-01-06T14:00:00+02:00"},
        {"timestamp": 1704542400},
        {"service": ""},
        {"service": "  "},
        {"service": 1},
        {"message": None},
        {"_id": "x"},
        {"": "empty name"},
    ],
)
def test_anything_else_takes_the_full_validation(change: dict[str, Any]) -> None:
    assert not is_canonical_log({**CANONICAL, **change})


@pytest.mark.parametrize("missing", ["timestamp", "service", "level", "message"])
def test_a_record_missing_a_field_is_not_canonical(missing: str) -> None:
    assert not is_canonical_log({k: v for k, v in CANONICAL.items() if k != missing})


def test_not_an_object_is_not_canonical() -> None:
    assert not is_canonical_log([CANONICAL])
    assert not is_canonical_log("{}")


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.text(max_size=30),
    st.sampled_from(["info", "INFO", "warn", "Warning", "fatal", "err", " info "]),
    st.sampled_from(
        [
            "2024-01-06T12:00:00.000000Z",
            "2024-01-06T12:00:00Z",
            "1969-12-31T23:59:59.000000Z",
            "2024-02-30T12:00:00.000000Z",
            "2024-01-06 12:00:00",
            "1704542400",
        ]
    ),
)
_keys = st.one_of(
    st.sampled_from(["timestamp", "service", "level", "message", "_x", "", "extra"]),
    st.text(max_size=8),
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=8), st.booleans())
def test_canonical_means_full_validation_accepts_it_unchanged(
    obj: dict[str, Any], base: bool
) -> None:
    if base:
        obj = {**CANONICAL, **obj}
    if is_canonical_log(obj):
        assert validate_log(copy.deepcopy(obj)) == obj
    else:
        try:
            validated = validate_log(copy.deepcopy(obj))
        except ValidationError:
            return
        # Accepted by the long way: then it needed normalising (or the check is too strict,
        # which costs time but never correctness). The result must be canonical.
        assert is_canonical_log(validated)


def test_transformer_still_normalises_non_canonical_records() -> None:
    doc = transformer().document(
        "1-0",
        orjson.dumps({**CANONICAL, "level": "WARNING", "timestamp": "2024-01-06T14:00:00.5+02:00"}),
    )
    body = orjson.loads(doc.source)
    assert body["level"] == "warn"
    assert body["timestamp"] == body["@timestamp"] == "2024-01-06T12:00:00.500000Z"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"not json", ""),
        (orjson.dumps({**CANONICAL, "_id": "x"}), "_id"),
        (orjson.dumps({**CANONICAL, "service": "  "}), "service"),
        (orjson.dumps({k: v for k, v in CANONICAL.items() if k != "level"}), "level"),
        (orjson.dumps({**CANONICAL, "timestamp": "2024-13-06T12:00:00.000000Z"}), "timestamp"),
    ],
)
def test_transformer_still_rejects_invalid_records(payload: bytes, field: str) -> None:
    with pytest.raises(LogParseError) as info:
        transformer().document("1-0", payload)
    assert info.value.field == field


def test_fast_path_document_equals_the_long_way() -> None:
    t = transformer()
    payload = orjson.dumps({**CANONICAL, "extra": 1})
    fast = t.document("12-3", payload)
    slow_body = t.enrich(validate_log(orjson.loads(payload)), t.processed_at())
    fast_body = orjson.loads(fast.source)
    # processed_at is the clock at each call: they may straddle a millisecond.
    for body in (fast_body, slow_body):
        assert TIMESTAMP_RE.fullmatch(body.pop("processed_at"))
    assert fast_body == slow_body
    assert fast.id == "default:logs-stream:12-3"
    assert fast.action == (
        b'{"index":{"_index":"logs-2024.01.06","_id":"default:logs-stream:12-3"}}'
    )


def test_unusual_entry_ids_are_escaped_in_the_action_line() -> None:
    doc = transformer().document('a"b', orjson.dumps(CANONICAL))
    action = orjson.loads(doc.action)
    assert action == {"index": {"_index": "logs-2024.01.06", "_id": 'default:logs-stream:a"b'}}


def test_processed_at_without_a_clock_is_now_in_canonical_form() -> None:
    stamp = transformer().processed_at()
    assert is_canonical_timestamp(stamp)


def test_gc_tuning_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    try:
        tune_for_streaming(young=12_345)
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
