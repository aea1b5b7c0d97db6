"""The log worker's fast path for canonical records: same result as the full validation.

:func:`is_canonical_log` lets records written by our receivers skip
:func:`validate_log`; these tests pin that it only says "yes" when the full validation
would accept the record and change nothing, and that everything else still goes the long
way (normalised, or rejected with ``LogParseError``).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import re
from datetime import UTC, datetime
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


@pytest.mark.parametrize(
    "value",
    [
        "2024-01-06T24:00:00.000000Z",  # hour 24
        "2024-01-06T23:60:00.000000Z",
        "2024-01-06T23:59:60.000000Z",  # a leap second: fromisoformat refuses it too
        "2024-00-06T12:00:00.000000Z",
        "2024-01-00T12:00:00.000000Z",
        "2024-04-31T12:00:00.000000Z",
        "0000-01-01T00:00:00.000000Z",  # year 0 does not exist
        "2024-01-06T12:00:00.000000z",
        "2024-01-06t12:00:00.000000Z",
        " 2024-01-06T12:00:00.000000Z",
    ],
)
def test_out_of_range_fields_are_not_canonical(value: str) -> None:
    assert not is_canonical_timestamp(value)


def _reference_is_canonical(value: str) -> bool:
    """The definition, independent of the fast check: the canonical shape in ASCII digits
    (a regular expression), and a real instant."""
    shape = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
    with contextlib.suppress(ValueError):
        return re.fullmatch(shape, value) is not None and bool(datetime.fromisoformat(value))
    return False


@settings(max_examples=2000, deadline=None)
@given(
    st.sampled_from(
        ["2024-02-29T23:59:59.999999Z", "1999-12-31T00:00:00.000000Z", "2023-04-30T09:05:07.5Z"]
    ),
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=27),
            st.sampled_from("0123456789:-.,+TWZz t3٣") | st.characters(),
            st.sampled_from(["replace", "insert", "delete"]),
        ),
        max_size=3,
    ),
)
def test_canonical_timestamp_matches_its_definition(
    template: str, edits: list[tuple[int, str, str]]
) -> None:
    chars = list(template)
    for position, char, how in edits:
        at = min(position, len(chars) - 1)
        if how == "replace":
            chars[at] = char
        elif how == "insert":
            chars.insert(at, char)
        elif len(chars) > 1:
            del chars[at]
    value = "".join(chars)
    assert is_canonical_timestamp(value) is _reference_is_canonical(value)


_BATCH = [
    ("1-0", orjson.dumps(CANONICAL)),
    ("2-0", b"not json"),
    ("3-0", orjson.dumps({**CANONICAL, "level": "WARNING", "extra": {"a": 1}})),
    ("4-0", b""),
    ("5-0", orjson.dumps({k: v for k, v in CANONICAL.items() if k != "service"})),
    ('a"b', orjson.dumps({**CANONICAL, "timestamp": "2024-01-07T00:00:00Z"})),
    ("7-0", orjson.dumps({**CANONICAL, "environment": "staging", "version": "9"})),
]


def test_a_batch_gives_what_each_entry_gives_on_its_own() -> None:
    t = transformer()
    batch = t.documents([("logs-stream", entry_id, payload) for entry_id, payload in _BATCH])
    assert len(batch) == len(_BATCH)
    stamps = set()
    for (entry_id, payload), result in zip(_BATCH, batch, strict=True):
        if isinstance(result, LogParseError):
            with pytest.raises(LogParseError) as info:
                t.document(entry_id, payload)
            assert (str(result), result.field) == (str(info.value), info.value.field)
            continue
        single = t.document(entry_id, payload)
        assert (result.index, result.id, result.action) == (single.index, single.id, single.action)
        body, alone = orjson.loads(result.source), orjson.loads(single.source)
        stamps.add(body.pop("processed_at"))
        alone.pop("processed_at")
        assert body == alone
    assert len(stamps) == 1  # one processed_at for the whole batch
    assert [type(r).__name__ for r in batch] == [
        "LogDocument", "LogParseError", "LogDocument", "LogParseError", "LogParseError",
        "LogDocument", "LogDocument",
    ]  # fmt: skip


def test_an_empty_payload_names_the_data_field() -> None:
    [result] = transformer().documents([("logs-stream", "1-0", b"")])
    assert isinstance(result, LogParseError)
    assert result.field == "data"
    assert "no `data` field" in str(result)


# --- the spliced document: a canonical record's own bytes plus the enrichment ------------

_FIXED = datetime(2024, 1, 6, 12, 0, 1, 500000, tzinfo=UTC)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
_extra_keys = st.one_of(
    st.sampled_from(["environment", "version", "cluster", "é", 'q"uote', "a\\b"]),
    st.text(min_size=1, max_size=8).filter(lambda k: not k.startswith("_")),
)


def _long_way(t: LogTransformer, record: dict[str, Any]) -> bytes:
    """The document as enrich + serialise make it (the path the splice stands in for)."""
    return orjson.dumps(t.enrich(copy.deepcopy(record), t.processed_at()))


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(_extra_keys, _json_values, max_size=6),
    st.dictionaries(
        st.sampled_from(["cluster", "region", "zone"]), st.text(min_size=1, max_size=8)
    ),
    st.sampled_from([0, orjson.OPT_INDENT_2, orjson.OPT_APPEND_NEWLINE]),
)
def test_the_spliced_document_is_the_long_way_byte_for_byte(
    extra: dict[str, Any], fields: dict[str, str], option: int
) -> None:
    record = {**CANONICAL, **extra}
    assert is_canonical_log(record)
    t = LogTransformer(
        LogTransformSettings(environment="prod", fields=fields),
        pipeline="default", stream="logs-stream", index_prefix="logs", clock=lambda: _FIXED,
    )  # fmt: skip
    payload = orjson.dumps(record, option=option)
    doc = t.document("1-0", payload)
    expected = _long_way(t, record)
    # Same fields, same values, same order; byte for byte when the payload is compact.
    assert list(orjson.loads(doc.source).items()) == list(orjson.loads(expected).items())
    if option != orjson.OPT_INDENT_2:
        assert doc.source == expected


@pytest.mark.parametrize("own", ["@timestamp", "processed_at"])
def test_a_record_with_a_field_enrich_sets_has_it_replaced_not_repeated(own: str) -> None:
    t = LogTransformer(
        LogTransformSettings(), pipeline="default", stream="logs-stream", index_prefix="logs",
        clock=lambda: _FIXED,
    )  # fmt: skip
    doc = t.document("1-0", orjson.dumps({**CANONICAL, own: "mine"}))
    assert doc.source.count(f'"{own}"'.encode()) == 1
    body = orjson.loads(doc.source)
    assert body["@timestamp"] == CANONICAL["timestamp"]
    assert body["processed_at"] == "2024-01-06T12:00:01.500000Z"


@pytest.mark.parametrize(
    "settings_",
    [
        LogTransformSettings(ecs=True),
        LogTransformSettings(drop_fields=["extra"]),
        LogTransformSettings(rename_fields={"extra": "renamed"}),
    ],
)
def test_drops_renames_and_ecs_still_apply_to_canonical_records(
    settings_: LogTransformSettings,
) -> None:
    t = LogTransformer(
        settings_, pipeline="default", stream="logs-stream", index_prefix="logs",
        clock=lambda: _FIXED,
    )  # fmt: skip
    record = {**CANONICAL, "extra": 1}
    body = orjson.loads(t.document("1-0", orjson.dumps(record)).source)
    assert body == orjson.loads(_long_way(t, record))
    assert ("extra" in body) is bool(settings_.ecs)
