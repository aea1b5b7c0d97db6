"""Prometheus text format, remote_write protobuf, and body decoding (pure functions)."""

from __future__ import annotations

import gzip
import math

import cramjam
import pytest

from killkrill.receivers.batch import build_batch, split_json_body
from killkrill.receivers.body import decode_content, gunzip, unsnappy
from killkrill.receivers.errors import RequestError
from killkrill.receivers.promtext import parse_prometheus_text
from killkrill.receivers.protobuf import ProtobufError, read_fields
from killkrill.receivers.remote_write import decode_write_request, encode_write_request
from killkrill.schemas import validate_log

EXPOSITION = b"""# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9
# TYPE rpc_duration_seconds histogram
rpc_duration_seconds_bucket{le="+Inf"} 144320
rpc_duration_seconds_sum 53423
something_weird{problem="division by zero"} +Inf -3982045
broken{a="1" 5
"""


def test_exposition_samples_types_labels_and_escapes() -> None:
    items = parse_prometheus_text(EXPOSITION)
    values = [i.value for i in items if i.error is None]
    assert values[0] == {"name": "http_requests_total", "value": "1027",
                         "labels": {"method": "post", "code": "200"},
                         "timestamp": 1395066363000.0, "type": "counter"}  # fmt: skip
    assert values[2]["labels"] == {
        "path": "C:\\DIR\\FILE.TXT",
        "error": 'Cannot find file:\n"FILE.TXT"',
    }
    assert values[3]["type"] == "histogram" and values[3]["labels"] == {"le": "+Inf"}
    assert values[4]["type"] == "histogram"
    errors = [i for i in items if i.error is not None]
    assert len(errors) == 1 and errors[0].line == 10 and "label" in (errors[0].error or "")
    assert values[5]["value"] == "+Inf"  # refused later by validate_metric as non-finite


def test_remote_write_round_trip_with_metadata_and_staleness() -> None:
    body = encode_write_request(
        [
            ({"__name__": "up", "job": "node"}, [(1.0, 1704542400000), (math.nan, 1704542401000)]),
            ({"__name__": "req_total", "code": "200"}, [(5.0, 1704542400000)]),
        ],
        {"req": "counter", "up": "gauge"},
    )
    decoded = decode_write_request(body)
    assert decoded.series == 2 and decoded.non_finite == 1
    assert decoded.samples == [
        {"name": "up", "value": 1.0, "labels": {"job": "node"}, "timestamp": 1704542400.0, "type": "gauge"},
        {"name": "req_total", "value": 5.0, "labels": {"code": "200"}, "timestamp": 1704542400.0,
         "type": "counter"},
    ]  # fmt: skip


@pytest.mark.parametrize("junk", [b"\x0a\xff", b"\x0a\x05ab", b"\x00", b"\x0f", b"\x09abc"])
def test_malformed_protobuf_raises_protobuf_error(junk: bytes) -> None:
    with pytest.raises(ProtobufError):
        list(read_fields(junk))


def test_snappy_block_decoding_and_limits() -> None:
    raw = encode_write_request([({"__name__": "up"}, [(1.0, 1)])])
    assert unsnappy(bytes(cramjam.snappy.compress_raw(raw)), 10_000) == raw
    with pytest.raises(RequestError) as info:
        unsnappy(bytes(cramjam.snappy.compress_raw(b"x" * 5000)), 1000)
    assert info.value.status == 413
    with pytest.raises(RequestError) as info:
        unsnappy(b"\x10garbage!", 1000)
    assert info.value.code == "invalid_snappy"


def test_gzip_multi_member_truncated_and_bomb() -> None:
    assert gunzip(gzip.compress(b"ab") + gzip.compress(b"cd"), 100) == b"abcd"
    with pytest.raises(RequestError) as info:
        gunzip(gzip.compress(b"abcdef" * 100)[:-12], 10_000)
    assert info.value.code == "truncated_gzip"
    with pytest.raises(RequestError) as info:
        gunzip(gzip.compress(b"\0" * 1_000_000), 10_000)
    assert (info.value.status, info.value.limit) == (413, "http.max_decompressed_bytes")
    with pytest.raises(RequestError) as info:
        decode_content(b"x", "br", 100)
    assert info.value.status == 415


def test_split_json_body_shapes() -> None:
    assert [i.value for i in split_json_body(b'{"a":1}', ndjson=False, max_records=5)] == [{"a": 1}]
    assert len(split_json_body(b"[{},{}]", ndjson=False, max_records=5)) == 2
    items = split_json_body(b'{"a":1}\n\n{bad\n{"b":2}\n', ndjson=False, max_records=5)
    assert [(i.line, i.error is None) for i in items] == [(1, True), (3, False), (4, True)]
    with pytest.raises(RequestError) as info:
        split_json_body(b"[{},{},{}]", ndjson=False, max_records=2)
    assert info.value.status == 413


def test_build_batch_collects_errors_and_enforces_record_size() -> None:
    good = {"timestamp": 1, "service": "s", "level": "info", "message": "m" * 50}
    items = split_json_body(
        b"["
        + b",".join(
            [b'{"timestamp":1,"service":"s","level":"info","message":"' + b"m" * 50 + b'"}', b"3"]
        )
        + b"]",
        ndjson=False,
        max_records=5,
    )
    batch = build_batch(items, validate_log, max_record_bytes=1000)
    assert len(batch.payloads) == 1 and batch.errors[0].index == 1
    small = build_batch(items[:1], validate_log, max_record_bytes=50)
    assert "limits.max_record_bytes" in small.errors[0].reason
    assert good["service"] == "s"
