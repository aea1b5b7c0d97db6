"""The syslog parser: known messages from the RFCs and real tools; arbitrary bytes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from killkrill.receivers.syslog_parser import parse_syslog
from killkrill.schemas import validate_log

NOW = datetime(2024, 11, 25, 18, 0, tzinfo=UTC)


def test_rfc5424_with_structured_data() -> None:
    rec = parse_syslog(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 42 ID47 "
        b'[exampleSDID@32473 iut="3" eventSource="App\\"x\\]"][meta class="high"] '
        b"\xef\xbb\xbfAn application event",
        received_at=NOW,
    )
    assert rec["timestamp"] == "2003-10-11T22:14:15.003000Z"
    assert rec["service"] == "evntslog"
    assert rec["level"] == "info"  # notice
    assert rec["facility"] == "local4"
    assert rec["severity"] == "notice"
    assert rec["hostname"] == "mymachine.example.com"
    assert rec["procid"] == "42"
    assert rec["msgid"] == "ID47"
    assert rec["structured_data"] == {
        "exampleSDID@32473": {"iut": "3", "eventSource": 'App"x]'},
        "meta": {"class": "high"},
    }
    assert rec["message"] == "An application event"
    assert rec["syslog_format"] == "rfc5424"
    assert rec["raw"].startswith("<165>1 2003-10-11")


def test_rfc5424_nil_values_and_offset() -> None:
    rec = parse_syslog(b"<11>1 2003-08-24T05:14:15.000003-07:00 - - - - - boom", received_at=NOW)
    assert rec["timestamp"] == "2003-08-24T12:14:15.000003Z"
    assert rec["service"] == "syslog"
    assert rec["level"] == "error"
    assert "hostname" not in rec and "procid" not in rec and "msgid" not in rec
    assert rec["message"] == "boom"


def test_rfc3164_with_host_tag_and_pid() -> None:
    rec = parse_syslog(b"<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed", received_at=NOW)
    assert rec["timestamp"] == "2024-10-11T22:14:15.000000Z"
    assert (rec["service"], rec["hostname"], rec["procid"]) == ("su", "mymachine", "230")
    assert rec["level"] == "fatal"  # crit
    assert rec["message"] == "'su root' failed"
    assert rec["syslog_format"] == "rfc3164"


def test_rfc3164_december_line_read_in_january_keeps_its_year() -> None:
    rec = parse_syslog(
        b"<13>Dec 31 23:59:59 h app: x", received_at=datetime(2025, 1, 1, tzinfo=UTC)
    )
    assert rec["timestamp"].startswith("2024-12-31")


def test_rsyslog_forward_format_with_rfc3339_time() -> None:
    rec = parse_syslog(b"<30>2024-01-06T12:00:00.5+01:00 web nginx: GET /", received_at=NOW)
    assert rec["timestamp"] == "2024-01-06T11:00:00.500000Z"
    assert (rec["hostname"], rec["service"], rec["message"]) == ("web", "nginx", "GET /")


def test_unparseable_lines_are_kept_with_a_marker() -> None:
    rec = parse_syslog(b"hello \xff world", received_at=NOW, default_service="edge")
    assert rec["service"] == "edge"
    assert rec["message"] == "hello \ufffd world"
    assert rec["raw"] == "hello \\xff world"
    assert rec["parse_error"] == "no <PRI> at the start"
    assert rec["timestamp"] == "2024-11-25T18:00:00.000000Z"


def test_bad_structured_data_is_kept_in_the_message() -> None:
    rec = parse_syslog(b'<13>1 2024-01-06T12:00:00Z h a - - [broken x="1" rest', received_at=NOW)
    assert rec["parse_error"].startswith("malformed STRUCTURED-DATA")
    assert rec["message"] == '[broken x="1" rest'


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_never_raises_on_arbitrary_bytes_and_always_yields_a_valid_record(data: bytes) -> None:
    rec = parse_syslog(data, received_at=NOW)
    validate_log(dict(rec))


_PRI = st.integers(0, 200).map(lambda p: f"<{p}>".encode())
_TEXT = st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass"))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PRI, _TEXT, st.sampled_from([
    b"1 ", b"- ", b"[", b"]", b'="', b"\\", b" ", b"Oct 11 22:14:15 ", b"2024-01-06T12:00:00Z ",
    b"tag[12]: ", b"\xef\xbb\xbf",
])), max_size=12).map(b"".join))  # fmt: skip
def test_never_raises_on_syslog_like_bytes(data: bytes) -> None:
    rec = parse_syslog(data, received_at=NOW)
    validate_log(dict(rec))
    assert rec["raw"] is not None


def test_rfc3164_timestamps_are_read_in_the_configured_zone() -> None:
    line = b"<30>Jan  6 12:00:01 db-1 postgres[77]: checkpoint complete"
    now = datetime(2024, 1, 6, 13, 0, tzinfo=UTC)
    assert parse_syslog(line, received_at=now)["timestamp"] == "2024-01-06T12:00:01.000000Z"
    berlin = parse_syslog(line, received_at=now, rfc3164_tz=ZoneInfo("Europe/Berlin"))
    assert berlin["timestamp"] == "2024-01-06T11:00:01.000000Z"  # CET is UTC+1 in January
    # RFC 5424 timestamps carry their own offset: the setting does not touch them.
    rfc5424 = b"<14>1 2024-01-06T12:00:00.000Z web-1 nginx - - - hello"
    assert parse_syslog(rfc5424, rfc3164_tz=ZoneInfo("Asia/Tokyo"))["timestamp"] == (
        "2024-01-06T12:00:00.000000Z"
    )


def test_rfc3164_zone_setting_is_validated() -> None:
    from killkrill.config import ReceiverSettings, SyslogSettings
    from killkrill.errors import ConfigError

    assert SyslogSettings(rfc3164_timezone="America/New_York").rfc3164_zone == ZoneInfo(
        "America/New_York"
    )
    with pytest.raises(
        ConfigError, match=r"syslog\.rfc3164_timezone: .*not a known IANA time zone"
    ):
        ReceiverSettings.load(None, {"syslog.rfc3164_timezone": "Mars/Olympus"})


@pytest.mark.parametrize(
    "frame",
    [
        b'<14>1 2024-01-06T12:00:00.000Z host app 123 ID1 [a@1 b="c"] text',
        b"<13>Jan  6 12:00:00 host app[7]: text",
        b"no pri at all \xff",
        b"<999>garbage",
        b"",
    ],
)
def test_parsed_records_are_valid_so_only_the_limits_can_refuse_them(frame: bytes) -> None:
    """The syslog receiver checks only the limits of parsed records (check_log_limits):
    that is sound because every parsed record passes the full validation unchanged."""
    rec = parse_syslog(frame, received_at=NOW)
    assert validate_log(dict(rec)) == rec


def test_the_lean_record_leaves_out_raw_unless_the_line_did_not_parse() -> None:
    line = b"<165>1 2003-10-11T22:14:15.003Z host app 42 ID47 - hello"
    lean = parse_syslog(line, received_at=NOW, keep_raw=False)
    assert "raw" not in lean
    assert lean == {k: v for k, v in parse_syslog(line, received_at=NOW).items() if k != "raw"}
    assert "raw" not in parse_syslog(b"<13>Oct 11 22:14:15 host su: hi", keep_raw=False)
    for kept in (b"no pri here", b"<165>1 2003-10-11T22:14:15Z h a - - [bad sd"):
        record = parse_syslog(kept, received_at=NOW, keep_raw=False)
        assert "parse_error" in record
        assert record["raw"] == kept.decode()
