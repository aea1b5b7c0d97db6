"""The per-record timestamp fast paths give exactly what the plain implementations they
replaced gave: timestamps written by %-formatting instead of format specs, RFC 3339 text
read without a failed ``float()`` first. The plain writer is kept here as the oracle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from killkrill.schemas import format_timestamp, normalise_timestamp, parse_timestamp


def plain_format_timestamp(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}.{dt.microsecond:06d}Z"
    )


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
        ),
    )
)
def test_timestamps_are_written_as_the_seven_fields_wrote_them(dt: datetime) -> None:
    assert format_timestamp(dt) == plain_format_timestamp(dt)


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", ""]),
    st.sampled_from(["T", " "]),
    st.integers(min_value=0, max_value=9),
)
def test_rfc3339_text_is_read_with_any_fraction_and_offset(
    dt: datetime, offset: str, sep: str, digits: int
) -> None:
    fraction = f"{dt.microsecond:06d}{'789'}"[:digits]
    text = dt.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{fraction}" if digits else "") + offset
    micros = int((fraction + "000000")[:6]) if digits else 0
    local = dt.replace(microsecond=micros, tzinfo=None)
    shift = {"Z": 0, "+00:00": 0, "+05:30": 330, "-08:00": -480, "": 0}[offset]
    expected = (local - timedelta(minutes=shift)).replace(tzinfo=UTC)
    if expected.year < 1970:
        return
    assert parse_timestamp(text) == expected


def test_numbers_in_text_are_still_epochs() -> None:
    assert parse_timestamp("1700000000") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parse_timestamp("1700000000.5") == datetime(2023, 11, 14, 22, 13, 20, 500000, tzinfo=UTC)
    assert parse_timestamp("1.7e9") == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert parse_timestamp("1700000000123") == datetime(
        2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC
    )


@settings(max_examples=500, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.sampled_from(["+00:00", "-00:00", "+01:00", "Z"]),
)
def test_utc_written_as_an_offset_normalises_as_the_parse_did(dt: datetime, offset: str) -> None:
    text = dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + offset
    assert normalise_timestamp(text) == format_timestamp(parse_timestamp(text))
