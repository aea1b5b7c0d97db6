"""Syslog messages (RFC 5424 and RFC 3164/BSD) as log records. Pure; never raises.

Mapping: severity -> ``level`` (emerg/alert/crit -> fatal, err -> error, warning -> warn,
notice/info -> info, debug -> debug); APP-NAME (5424) or TAG (3164) -> ``service``;
``hostname``, ``facility``, ``severity``, ``procid``, ``msgid`` and ``structured_data``
(``{sd-id: {param: value}}``) become fields, and the original line is kept in ``raw``.
A line that is neither format is still a record: its text is the ``message``, the
``service`` is the configured default, and ``parse_error`` says what was wrong.

RFC 3164 timestamps carry no year and no zone: the year is the latest that does not put the
time more than a day after its arrival, and the zone is ``rfc3164_tz`` (the senders' local
zone; UTC unless configured, ``syslog.rfc3164_timezone``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from killkrill.schemas import format_timestamp, normalise_timestamp, parse_timestamp

__all__ = ["FACILITIES", "SEVERITY_LEVELS", "parse_syslog"]

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
SEVERITY_LEVELS = ("fatal", "fatal", "fatal", "error", "warn", "info", "info", "debug")

_PRI = re.compile(rb"<(\d{1,3})>")
_5424 = re.compile(
    r"1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+)"
    r"(?: (?P<rest>.*))?",
    re.DOTALL,
)
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
)}  # fmt: skip
_3164_TS = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2}) (?P<time>\d\d:\d\d:\d\d)(?:\.\d+)?"
    r"(?: (?P<year>\d{4}))?(?: |$)"
)
_ISO_TS = re.compile(r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ")
_TAG = re.compile(r"(?P<tag>[^\s:\[\]]{1,64})(?:\[(?P<pid>[^\]\s]{1,32})\])?: ?")
# After a timestamp and hostname a TAG may also end at a space (as rsyslog reads it, and as
# rsyslog's own RSYSLOG_ForwardFormat writes the APP-NAME of an RFC 5424 message).
_TAG_SP = re.compile(r"(?P<tag>[A-Za-z0-9_./-]{1,64})(?:\[(?P<pid>[^\]\s]{1,32})\])? ")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,254}")
_BOM = "\ufeff"


def parse_syslog(
    frame: bytes,
    *,
    received_at: datetime | None = None,
    default_service: str = "syslog",
    rfc3164_tz: tzinfo = UTC,
    keep_raw: bool = True,
) -> dict[str, Any]:
    """Parse one syslog frame into a log-record ``dict``; never raises.

    ``rfc3164_tz`` is the zone of RFC 3164 timestamps (they carry none). Without
    ``keep_raw`` the line is not kept in ``raw`` when it parsed as RFC 5424 or 3164 (a line
    that did not is kept: its ``message`` may be all that is left of it). The result always
    passes :func:`killkrill.schemas.validate_log`.
    """
    now = received_at or datetime.now(UTC)
    try:
        record = _parse(frame, now, default_service, rfc3164_tz)
    except Exception as exc:  # a parser bug must not lose the message
        return _unparsed(frame, now, default_service, f"parser error: {type(exc).__name__}")
    if not keep_raw and "parse_error" not in record:
        del record["raw"]
    return record


def _parse(frame: bytes, now: datetime, default_service: str, tz: tzinfo) -> dict[str, Any]:
    data = frame.rstrip(b"\r\n\x00")
    match = _PRI.match(data)
    if match is None:
        return _unparsed(data, now, default_service, "no <PRI> at the start")
    pri = int(match.group(1))
    if pri > 191:
        return _unparsed(data, now, default_service, f"PRI {pri} is above 191")
    facility, severity = divmod(pri, 8)
    body = data[match.end() :].decode("utf-8", "replace")
    raw = data.decode("utf-8", "backslashreplace")
    base: dict[str, Any] = {
        "timestamp": "",
        "service": default_service,
        "level": SEVERITY_LEVELS[severity],
        "message": "",
        "facility": FACILITIES[facility],
        "severity": SEVERITIES[severity],
    }
    if body.startswith("1 "):
        record = _parse_5424(body, base, now)
        if record is not None:
            record["raw"] = raw
            return record
    record = _parse_3164(body, base, now, tz)
    record["raw"] = raw
    return record


def _parse_5424(body: str, rec: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    match = _5424.fullmatch(body)
    if match is None:
        return None
    ts = match["ts"]
    if ts == "-":
        rec["timestamp"] = format_timestamp(now)
    else:
        try:
            rec["timestamp"] = normalise_timestamp(ts)
        except ValueError:
            return None
    for key, value in (("hostname", match["host"]), ("procid", match["procid"]),
                       ("msgid", match["msgid"])):  # fmt: skip
        if value != "-":
            rec[key] = value
    if match["app"] != "-":
        rec["service"] = match["app"]
    rest = match["rest"] or ""
    if rest.startswith("-"):
        msg = rest[2:] if rest.startswith("- ") else rest[1:]
    elif rest.startswith("["):
        sd, end = _parse_sd(rest)
        if sd is None:
            rec["parse_error"] = "malformed STRUCTURED-DATA; kept in message"
            msg = rest
        else:
            rec["structured_data"] = sd
            msg = rest[end + 1 :] if rest[end : end + 1] == " " else rest[end:]
    else:
        rec["parse_error"] = "missing STRUCTURED-DATA ('-' or '[...]')"
        msg = rest
    rec["message"] = msg[1:] if msg.startswith(_BOM) else msg
    rec["syslog_format"] = "rfc5424"
    return rec


def _parse_sd(text: str) -> tuple[dict[str, dict[str, str]] | None, int]:
    """Parse ``[id k="v" ...]...``; return the elements and the index after them."""
    out: dict[str, dict[str, str]] = {}
    pos = 0
    end = len(text)
    while pos < end and text[pos] == "[":
        pos += 1
        start = pos
        while pos < end and text[pos] not in " ]":
            pos += 1
        sd_id = text[start:pos]
        if not sd_id:
            return None, 0
        params: dict[str, str] = {}
        while pos < end and text[pos] == " ":
            pos += 1
            start = pos
            while pos < end and text[pos] not in '= ]"':
                pos += 1
            name = text[start:pos]
            if not name or pos + 1 >= end or text[pos] != "=" or text[pos + 1] != '"':
                return None, 0
            pos += 2
            chars: list[str] = []
            while True:
                if pos >= end:
                    return None, 0
                ch = text[pos]
                if ch == "\\" and pos + 1 < end and text[pos + 1] in '"\\]':
                    chars.append(text[pos + 1])
                    pos += 2
                    continue
                if ch == '"':
                    pos += 1
                    break
                chars.append(ch)
                pos += 1
            params[name] = "".join(chars)
        if pos >= end or text[pos] != "]":
            return None, 0
        pos += 1
        out[sd_id] = params
    return out, pos


def _parse_3164(body: str, rec: dict[str, Any], now: datetime, tz: tzinfo) -> dict[str, Any]:
    rest = body
    match = _3164_TS.match(rest)
    iso = None if match else _ISO_TS.match(rest)
    if match is not None:
        rec["timestamp"] = format_timestamp(_bsd_time(match, now, tz))
        rest = rest[match.end() :]
    elif iso is not None:
        try:
            rec["timestamp"] = format_timestamp(parse_timestamp(iso["ts"]))
        except ValueError:
            rec["timestamp"] = format_timestamp(now)
        rest = rest[iso.end() :]
    else:
        rec["timestamp"] = format_timestamp(now)
        rec["parse_error"] = "no RFC 3164 or RFC 3339 timestamp; arrival time used"
    has_host = False
    if match is not None or iso is not None:
        # HOSTNAME, unless what follows is already the TAG ("host tag: msg" vs "tag: msg").
        word, _, after = rest.partition(" ")
        if word and not word.endswith(":") and "[" not in word and _HOST.fullmatch(word):
            rec["hostname"] = word
            rest = after
            has_host = True
    tag = _TAG.match(rest) or (_TAG_SP.match(rest) if has_host else None)
    if tag is not None:
        rec["service"] = tag["tag"]
        if tag["pid"]:
            rec["procid"] = tag["pid"]
        rest = rest[tag.end() :]
    rec["message"] = rest
    rec["syslog_format"] = "rfc3164"
    return rec


def _bsd_time(match: re.Match[str], now: datetime, tz: tzinfo) -> datetime:
    """The time of a BSD timestamp in zone ``tz``: its own year if given, else the latest
    year that does not put it more than a day after its arrival (so December lines read in
    January land in the old year)."""
    month = _MONTHS.get(match["mon"])
    if month is None:
        return now
    hh, mm, ss = (int(x) for x in match["time"].split(":"))
    day = int(match["day"])
    years = [int(match["year"])] if match["year"] else [now.year, now.year - 1]
    for year in years:
        try:
            candidate = datetime(year, month, day, hh, mm, ss, tzinfo=tz)
        except ValueError:
            continue
        if match["year"] or candidate - now <= timedelta(days=1):
            return candidate
    return now


def _unparsed(data: bytes, now: datetime, default_service: str, why: str) -> dict[str, Any]:
    text = data.decode("utf-8", "replace")
    return {
        "timestamp": format_timestamp(now),
        "service": default_service,
        "level": "info",
        "message": text,
        "raw": data.decode("utf-8", "backslashreplace"),
        "parse_error": why,
        "syslog_format": "unparsed",
    }
