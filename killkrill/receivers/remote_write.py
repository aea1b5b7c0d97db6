"""Prometheus remote_write 1.0: a snappy block holding a protobuf ``WriteRequest``.

::

    WriteRequest   { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2;
                     repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
    Label          { string name = 1; string value = 2; }
    Sample         { double value = 1; int64 timestamp = 2; }   // timestamp in ms
    MetricMetadata { MetricType type = 1; string metric_family_name = 2; ... }

Decoding is pure. Each sample becomes a metric-sample ``dict`` (``__name__`` becomes
``name``, the other labels stay labels, the type comes from the metadata when Prometheus
sends it). Non-finite values (including Prometheus' staleness markers) and native
histograms cannot be stored as finite samples: they are counted in :class:`Decoded`, not
treated as errors, since the sender cannot do anything about them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from killkrill.receivers.promtext import family_type
from killkrill.receivers.protobuf import (
    FIXED64,
    LENGTH,
    VARINT,
    ProtobufError,
    as_double,
    read_fields,
    write_field,
)

__all__ = ["Decoded", "ProtobufError", "decode_write_request", "encode_write_request"]

_TYPE_CODES = {"untyped": 0, "counter": 1, "gauge": 2, "histogram": 3, "summary": 5}
_METADATA_TYPES = {0: "untyped", 1: "counter", 2: "gauge", 3: "histogram", 4: "histogram",
                   5: "summary", 6: "gauge", 7: "gauge"}  # fmt: skip


@dataclass(slots=True)
class Decoded:
    """The samples of one WriteRequest and what had to be left out."""

    samples: list[dict[str, Any]] = field(default_factory=list)
    non_finite: int = 0
    """Samples with NaN/±Inf values (staleness markers included), not stored."""
    histograms: int = 0
    """Native-histogram samples, not stored (only classic histograms are supported)."""
    series: int = 0


def decode_write_request(buf: bytes) -> Decoded:
    """Decode an (already decompressed) WriteRequest; raises :class:`ProtobufError`."""
    out = Decoded()
    series: list[bytes] = []
    types: dict[str, str] = {}
    for number, wire, value in read_fields(buf):
        if wire != LENGTH or not isinstance(value, bytes):
            continue
        if number == 1:
            series.append(value)
        elif number == 3:
            _read_metadata(value, types)
    for raw in series:
        _read_series(raw, types, out)
    out.series = len(series)
    return out


def _read_series(buf: bytes, types: dict[str, str], out: Decoded) -> None:
    labels: dict[str, str] = {}
    samples: list[tuple[float, int]] = []
    for number, wire, value in read_fields(buf):
        if wire != LENGTH or not isinstance(value, bytes):
            continue
        if number == 1:
            name, label_value = _read_label(value)
            labels[name] = label_value
        elif number == 2:
            samples.append(_read_sample(value))
        elif number == 4:
            out.histograms += 1
    name = labels.pop("__name__", "")
    kind = family_type(name, types) if types else "untyped"
    append = out.samples.append
    for sample_value, ts in samples:
        if not math.isfinite(sample_value):
            out.non_finite += 1
            continue
        append(
            {
                "name": name,
                "value": sample_value,
                "labels": dict(labels),
                "timestamp": ts / 1000,  # ms -> s: unambiguous for the schema's unit guess
                "type": kind,
            }
        )


def _read_label(buf: bytes) -> tuple[str, str]:
    name = value = b""
    for number, wire, raw in read_fields(buf):
        if wire == LENGTH and isinstance(raw, bytes):
            if number == 1:
                name = raw
            elif number == 2:
                value = raw
    try:
        return name.decode("utf-8"), value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufError("a label is not valid UTF-8") from None


def _read_sample(buf: bytes) -> tuple[float, int]:
    value = 0.0
    ts = 0
    for number, wire, raw in read_fields(buf):
        if number == 1 and wire == FIXED64 and isinstance(raw, int):
            value = as_double(raw)
        elif number == 2 and wire == VARINT and isinstance(raw, int):
            ts = raw - (1 << 64) if raw >= 1 << 63 else raw
    return value, ts


def _read_metadata(buf: bytes, types: dict[str, str]) -> None:
    kind = 0
    family = b""
    for number, wire, raw in read_fields(buf):
        if number == 1 and wire == VARINT and isinstance(raw, int):
            kind = raw
        elif number == 2 and wire == LENGTH and isinstance(raw, bytes):
            family = raw
    if family:
        types[family.decode("utf-8", "replace")] = _METADATA_TYPES.get(kind, "untyped")


def encode_write_request(
    series: list[tuple[dict[str, str], list[tuple[float, int]]]],
    types: dict[str, str] | None = None,
) -> bytes:
    """Encode a WriteRequest (uncompressed): ``series`` is ``(labels incl. __name__,
    [(value, timestamp_ms)])``; ``types`` maps family names to types (metadata). Used by
    tests and benches to speak remote_write without Prometheus."""
    out = bytearray()
    for labels, samples in series:
        ts_buf = bytearray()
        for name, text in labels.items():
            label = write_field(1, LENGTH, name.encode()) + write_field(2, LENGTH, text.encode())
            ts_buf += write_field(1, LENGTH, label)
        for value, ts in samples:
            sample = write_field(1, FIXED64, float(value)) + write_field(2, VARINT, ts)
            ts_buf += write_field(2, LENGTH, sample)
        out += write_field(1, LENGTH, bytes(ts_buf))
    for family, kind in (types or {}).items():
        meta = write_field(1, VARINT, _TYPE_CODES.get(kind, 0)) + write_field(
            2, LENGTH, family.encode()
        )
        out += write_field(3, LENGTH, meta)
    return bytes(out)
