"""The Prometheus text exposition format (0.0.4, and OpenMetrics 1.0 text) as samples.

Pure: bytes in, one :class:`~killkrill.receivers.batch.Item` per sample line out, each a
metric-sample ``dict`` for :func:`~killkrill.schemas.validate_metric` or an error naming
the line. ``# TYPE`` lines give the samples of a family their type (``_bucket``, ``_sum``,
``_count``, ``_total``, ``_created`` samples belong to their family); ``# HELP``, ``# UNIT``,
``# EOF`` and comments are skipped. Timestamps are read as epoch numbers, so both the
milliseconds of 0.0.4 and the seconds of OpenMetrics work.
"""

from __future__ import annotations

import re
from typing import Any

from killkrill.receivers.batch import Item

__all__ = ["family_type", "parse_prometheus_text"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created", "_gcount", "_gsum", "_info")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped", "unknown", "gaugehistogram",
          "stateset", "info"}  # fmt: skip
_MAP_TYPE = {
    "unknown": "untyped", "gaugehistogram": "histogram", "stateset": "gauge", "info": "gauge",
}  # fmt: skip
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class _LineError(ValueError):
    pass


def parse_prometheus_text(body: bytes) -> list[Item]:
    """Parse an exposition body into items; malformed lines become error items."""
    text = body.decode("utf-8", "replace")
    types: dict[str, str] = {}
    items: list[Item] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            parts = line.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                kind = parts[3].strip().lower()
                if kind not in _TYPES:
                    items.append(Item(None, number, f"unknown metric type '{kind}' in # TYPE"))
                    continue
                types[parts[2]] = _MAP_TYPE.get(kind, kind)
            continue
        try:
            sample = _parse_sample(line)
        except _LineError as exc:
            items.append(Item(None, number, f"{exc} (in line: {line[:80]!r})"))
            continue
        sample["type"] = family_type(sample["name"], types)
        items.append(Item(sample, number))
    return items


def family_type(name: str, types: dict[str, str]) -> str:
    """The type of the family ``name`` belongs to (its own, or that of its base name)."""
    kind = types.get(name)
    if kind is not None:
        return kind
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            kind = types.get(name[: -len(suffix)])
            if kind is not None:
                return kind
    return "untyped"


def _parse_sample(line: str) -> dict[str, Any]:
    match = _NAME.match(line)
    if match is None:
        raise _LineError("a sample line must start with a metric name")
    name = match.group()
    pos = match.end()
    labels: dict[str, str] = {}
    if pos < len(line) and line[pos] == "{":
        pos = _parse_labels(line, pos + 1, labels)
    rest = line[pos:]
    if rest and not rest[0].isspace():
        raise _LineError(f"unexpected {rest[0]!r} after the metric name")
    if " # " in rest:  # an OpenMetrics exemplar follows
        rest = rest.split(" # ", 1)[0]
    fields = rest.split()
    if not fields or len(fields) > 2:
        raise _LineError("expected a value and an optional timestamp after the name")
    sample: dict[str, Any] = {"name": name, "value": fields[0], "labels": labels}
    if len(fields) == 2:
        try:
            sample["timestamp"] = float(fields[1])
        except ValueError:
            raise _LineError(f"timestamp {fields[1]!r} is not a number") from None
    return sample


def _parse_labels(line: str, pos: int, labels: dict[str, str]) -> int:
    end = len(line)
    while True:
        while pos < end and line[pos] in " \t,":
            pos += 1
        if pos < end and line[pos] == "}":
            return pos + 1
        match = _NAME.match(line, pos)
        if match is None:
            raise _LineError("expected a label name or '}'")
        key = match.group()
        pos = match.end()
        while pos < end and line[pos] in " \t":
            pos += 1
        if pos + 1 >= end or line[pos] != "=" or line[pos + 1] != '"':
            raise _LineError(f'expected ="value" after label {key}')
        pos += 2
        chars: list[str] = []
        while True:
            if pos >= end:
                raise _LineError(f"label {key}: value is not closed with '\"'")
            ch = line[pos]
            if ch == '"':
                pos += 1
                break
            if ch == "\\" and pos + 1 < end:
                chars.append(_ESCAPES.get(line[pos + 1], "\\" + line[pos + 1]))
                pos += 2
                continue
            chars.append(ch)
            pos += 1
        if key in labels:
            raise _LineError(f"label {key} appears twice")
        labels[key] = "".join(chars)
