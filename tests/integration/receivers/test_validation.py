"""Bad input: each case gets its documented status and a message naming the problem;
none gives a 500 and none writes anything to Redis."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Callable
from typing import Any

import cramjam
import httpx
import orjson
import pytest
import redis

from killkrill.receivers.remote_write import encode_write_request

LOG = {"timestamp": "2024-01-06T12:00:00Z", "service": "api", "level": "info", "message": "m"}
METRIC = {"name": "http_requests_total", "value": 1, "labels": {"code": "200"}}
JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}
TEXT = {"content-type": "text/plain; version=0.0.4"}
GZIP_JSON = {**JSON, "content-encoding": "gzip"}
PROTO = {"content-type": "application/x-protobuf", "content-encoding": "snappy"}

LIMITS = {
    "http.max_body_bytes": 4096,
    "http.max_decompressed_bytes": 16384,
    "http.max_batch_records": 10,
    "limits.max_message_length": 1000,
    "limits.max_record_bytes": 1500,
    "limits.max_fields": 8,
}


def j(value: Any) -> bytes:
    return orjson.dumps(value)


def without(key: str) -> dict[str, Any]:
    return {k: v for k, v in LOG.items() if k != key}


def snappy(data: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(data))


# (id, path, body, headers, status, words that must appear in the message)
CASES: list[tuple[str, str, bytes, dict[str, str], int, list[str]]] = [
    ("missing-service", "/api/v1/logs", j(without("service")), JSON, 422, ["service", "missing"]),
    ("missing-timestamp", "/api/v1/logs", j(without("timestamp")), JSON, 422, ["timestamp"]),
    ("missing-level", "/api/v1/logs", j(without("level")), JSON, 422, ["level", "missing"]),
    ("missing-message", "/api/v1/logs", j(without("message")), JSON, 422, ["message", "missing"]),
    ("level-wrong-type", "/api/v1/logs", j({**LOG, "level": ["info"]}), JSON, 422, ["level", "string"]),
    ("level-unknown", "/api/v1/logs", j({**LOG, "level": "loud"}), JSON, 422, ["level", "not a known level"]),
    ("service-number", "/api/v1/logs", j({**LOG, "service": 12}), JSON, 422, ["service", "must be a string"]),
    ("service-empty", "/api/v1/logs", j({**LOG, "service": " "}), JSON, 422, ["service", "empty"]),
    ("message-object", "/api/v1/logs", j({**LOG, "message": {"a": 1}}), JSON, 422, ["message", "string"]),
    ("timestamp-text", "/api/v1/logs", j({**LOG, "timestamp": "yesterday"}), JSON, 422, ["timestamp", "RFC 3339"]),
    ("timestamp-month-13", "/api/v1/logs", j({**LOG, "timestamp": "2024-13-01T00:00:00Z"}), JSON, 422, ["timestamp"]),
    ("timestamp-negative", "/api/v1/logs", j({**LOG, "timestamp": -1}), JSON, 422, ["timestamp", "1970"]),
    ("timestamp-bool", "/api/v1/logs", j({**LOG, "timestamp": True}), JSON, 422, ["timestamp", "boolean"]),
    ("timestamp-null", "/api/v1/logs", j({**LOG, "timestamp": None}), JSON, 422, ["timestamp", "null"]),
    ("record-not-object", "/api/v1/logs", j([1, 2]), JSON, 422, ["JSON object"]),
    ("top-level-string", "/api/v1/logs", j("hello"), JSON, 422, ["JSON object"]),
    ("reserved-field", "/api/v1/logs", j({**LOG, "_id": "x"}), JSON, 422, ["_id", "reserved"]),
    ("huge-message", "/api/v1/logs", j({**LOG, "message": "x" * 1001}), JSON, 422, ["message", "limits.max_message_length"]),
    ("huge-record", "/api/v1/logs", j({**LOG, "blob": "y" * 1600}), JSON, 422, ["limits.max_record_bytes"]),
    ("too-many-fields", "/api/v1/logs", j({**LOG, **{f"f{i}": i for i in range(5)}}), JSON, 422, ["limits.max_fields"]),
    ("invalid-utf8", "/api/v1/logs", b'{"timestamp": 1, "service": "a", "level": "info", "message": "\xff\xfe"}', JSON, 400, ["UTF-8"]),
    ("invalid-utf8-ndjson", "/api/v1/logs", b'{"message": "\xc3\x28"}\n', NDJSON, 422, ["UTF-8"]),
    ("bad-json", "/api/v1/logs", b'{"timestamp": ', JSON, 400, ["not valid JSON"]),
    ("bad-json-trailing", "/api/v1/logs", b'{"a": 1} xx', JSON, 400, ["not valid JSON"]),
    ("empty-body", "/api/v1/logs", b"", JSON, 400, ["empty"]),
    ("empty-array", "/api/v1/logs", b"[]", JSON, 400, ["empty"]),
    ("blank-ndjson", "/api/v1/logs", b"\n \n", NDJSON, 400, ["empty"]),
    ("truncated-gzip", "/api/v1/logs", gzip.compress(j([LOG] * 20))[:-10], GZIP_JSON, 400, ["gzip", "truncated"]),
    ("not-gzip", "/api/v1/logs", j(LOG), GZIP_JSON, 400, ["not valid gzip"]),
    ("gzip-bomb", "/api/v1/logs", gzip.compress(b" " * 100_000), GZIP_JSON, 413, ["http.max_decompressed_bytes"]),
    ("unknown-encoding", "/api/v1/logs", j(LOG), {**JSON, "content-encoding": "br"}, 415, ["Content-Encoding", "br"]),
    ("wrong-content-type", "/api/v1/logs", b"<log/>", {"content-type": "application/xml"}, 415, ["Content-Type", "application/xml"]),
    ("text-on-logs", "/api/v1/logs", b"hello", {"content-type": "text/plain"}, 415, ["Content-Type"]),
    ("over-limit-batch", "/api/v1/logs", j([LOG] * 11), JSON, 413, ["http.max_batch_records"]),
    ("over-limit-ndjson", "/api/v1/logs", b"\n".join([j(LOG)] * 11), NDJSON, 413, ["http.max_batch_records"]),
    ("body-too-large", "/api/v1/logs", j([{**LOG, "message": "z" * 900}] * 5), JSON, 413, ["http.max_body_bytes"]),
    ("stream-param-on-logs", "/api/v1/logs?stream=x", j(LOG), JSON, 400, ["stream", "not declared"]),
    ("log-far-future", "/api/v1/logs", j({**LOG, "timestamp": "2999-01-01T00:00:00Z"}), JSON, 422, ["timestamp", "limits.max_future_seconds"]),
    ("metric-nan", "/api/v1/metrics", j({**METRIC, "value": "NaN"}), JSON, 422, ["value", "finite"]),
    ("metric-inf", "/api/v1/metrics", j({**METRIC, "value": "+Inf"}), JSON, 422, ["value", "finite"]),
    ("metric-bad-name", "/api/v1/metrics", j({**METRIC, "name": "http-requests"}), JSON, 422, ["name", "Prometheus metric name"]),
    ("metric-missing-value", "/api/v1/metrics", j({"name": "up"}), JSON, 422, ["value", "missing"]),
    ("metric-label-number", "/api/v1/metrics", j({**METRIC, "labels": {"code": 200}}), JSON, 422, ["labels.code", "strings"]),
    ("metric-bad-label-name", "/api/v1/metrics", j({**METRIC, "labels": {"a-b": "1"}}), JSON, 422, ["labels.a-b"]),
    ("metric-bad-type", "/api/v1/metrics", j({**METRIC, "type": "meter"}), JSON, 422, ["type"]),
    ("metric-bad-timestamp", "/api/v1/metrics", j({**METRIC, "timestamp": "noon"}), JSON, 422, ["timestamp"]),
    ("text-nan-only", "/api/v1/metrics", b"up NaN\n", TEXT, 422, ["value", "finite"]),
    ("text-garbage", "/api/v1/metrics", b"{{{ not metrics\n", TEXT, 422, ["metric name"]),
    ("text-duplicate-label", "/api/v1/metrics", b'up{a="1",a="2"} 1\n', TEXT, 422, ["appears twice"]),
    ("text-comments-only", "/api/v1/metrics", b"# HELP up x\n", TEXT, 400, ["no samples"]),
    ("bad-stream-name", "/api/v1/metrics?stream=no%20spaces", j(METRIC), JSON, 400, ["stream", "not declared"]),
    ("metric-far-future", "/api/v1/metrics", j({**METRIC, "timestamp": 32503680000}), JSON, 422, ["timestamp", "limits.max_future_seconds"]),
    ("text-far-future", "/api/v1/metrics", b"up 1 32503680000000\n", TEXT, 422, ["limits.max_future_seconds"]),
    ("rw-far-future", "/api/v1/write", snappy(encode_write_request([({"__name__": "up"}, [(1.0, 32503680000000)])])), PROTO, 400, ["limits.max_future_seconds"]),
    ("rw-bad-snappy", "/api/v1/write", b"\x10not snappy at all", PROTO, 400, ["snappy"]),
    ("rw-not-protobuf", "/api/v1/write", snappy(b"\xff\xff\xff"), PROTO, 400, ["WriteRequest"]),
    ("rw-v2", "/api/v1/write", snappy(b""), {**PROTO, "content-type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}, 415, ["2.0"]),
    ("rw-gzip", "/api/v1/prom/write", gzip.compress(b"x"), {**PROTO, "content-encoding": "gzip"}, 415, ["snappy"]),
    ("rw-json", "/api/v1/write", j(METRIC), JSON, 415, ["application/x-protobuf"]),
    ("rw-empty", "/api/v1/write", b"", PROTO, 400, ["empty"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "status"),
    sorted({(c[1].split("?")[0], c[4]) for c in CASES}),
)
async def test_every_refusal_is_documented_in_the_openapi_document(
    client: httpx.AsyncClient, path: str, status: int
) -> None:
    """What the receiver answers is what its OpenAPI document promises clients."""
    spec = (await client.get("/openapi.json")).json()
    assert str(status) in spec["paths"][path]["post"]["responses"]


@pytest.fixture
async def limited(
    make_client: Callable[..., httpx.AsyncClient],
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(**LIMITS) as c:
        yield c


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
async def test_bad_input(
    limited: httpx.AsyncClient,
    redis_client: redis.Redis,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    words: list[str],
) -> None:
    response = await limited.post(path, content=body, headers=headers)
    assert response.status_code == status, response.text
    payload = response.json()
    message = payload.get("message", "")
    if status == 422 or "errors" in payload:
        message += " " + " ".join(f"{e['field']} {e['reason']}" for e in payload["errors"])
        assert payload["accepted"] == 0
    for word in words:
        assert word in message, (word, payload)
    assert redis_client.dbsize() == 0, "a refused request wrote to Redis"


async def test_the_past_bound_is_off_by_default_and_refuses_old_records_when_set(
    make_client: Callable[..., httpx.AsyncClient], redis_client: redis.Redis
) -> None:
    old = {**LOG, "timestamp": "2024-01-06T12:00:00Z"}  # backfills and the seed's fixtures
    async with make_client() as c:
        assert (await c.post("/api/v1/logs", json=old)).status_code == 200
    async with make_client(**{"limits.max_past_seconds": 86400}) as c:
        response = await c.post("/api/v1/logs", json=[old, {**old, "timestamp": None}])
        recent = await c.post("/api/v1/metrics", json=METRIC)  # no timestamp: now
    assert response.status_code == 422
    [error, _] = response.json()["errors"]
    assert error["field"] == "timestamp" and "limits.max_past_seconds" in error["reason"]
    assert recent.status_code == 200
    assert redis_client.xlen("logs-stream") == 1
