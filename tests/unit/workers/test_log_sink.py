"""The Elasticsearch sink's boundary: whole-request errors, retryable or about a document.

The Elasticsearch client is replaced by a small stand-in with the one method the sink calls
(``bulk``), raising the client's own exception types; the integration tests use the real
server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from elastic_transport import ApiResponseMeta, ConnectionError, ConnectionTimeout, HttpHeaders
from elasticsearch import ApiError

from killkrill.errors import RejectedBatch, ServiceUnavailable
from killkrill.streams.consumer import Entry
from killkrill.workers.base import DELIVERED, Item
from killkrill.workers.logs.sink import ElasticsearchSink
from killkrill.workers.logs.transform import LogDocument, action_line


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body


def _api_error(status: int, kind: str = "t") -> ApiError:
    meta = ApiResponseMeta(
        status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0, node=None
    )
    return ApiError("boom", meta=meta, body={"error": {"type": kind, "reason": "r"}})


class StubClient:
    """Answers ``bulk`` with the next scripted exception or success."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[int] = []

    async def bulk(self, *, operations: bytes, **_: Any) -> _Response:
        docs = operations.count(b"\n") // 2
        self.calls.append(docs)
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, BaseException):
                raise step
        return _Response({"errors": False, "items": [{"index": {"status": 201}}] * docs})


def items(n: int, size: int = 10) -> list[Item[LogDocument]]:
    return [
        Item(
            Entry("logs-stream", f"1-{i}", {b"data": b"{}"}),
            LogDocument(
                "logs-2024.01.06",
                f"id-{i}",
                orjson.dumps({"x": "y" * size}),
                action_line("logs-2024.01.06", f"id-{i}"),
            ),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "error",
    [
        ConnectionTimeout("timed out"),
        ConnectionError("refused"),
        _api_error(429),
        _api_error(503),
        _api_error(401),
        _api_error(400, "media_type_header_exception"),  # about the request, not a document
    ],
)
async def test_whole_request_failures_mean_retry_everything(error: BaseException) -> None:
    sink = ElasticsearchSink(StubClient(error))  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable):
        await sink.write(items(3))


async def test_success_answers_every_item() -> None:
    sink = ElasticsearchSink(StubClient())  # type: ignore[arg-type]
    assert await sink.write(items(3)) == {f"1-{i}": DELIVERED for i in range(3)}
    assert await sink.write([]) == {}


@pytest.mark.parametrize(
    "error",
    [
        _api_error(413),
        _api_error(400, "action_request_validation_exception"),
        _api_error(400, "illegal_argument_exception"),
    ],
)
async def test_whole_request_errors_about_a_document_refuse_the_batch(error: ApiError) -> None:
    """The worker splits such a batch (see StreamWorker); the sink only says so."""
    sink = ElasticsearchSink(StubClient(error))  # type: ignore[arg-type]
    with pytest.raises(RejectedBatch, match=f"elasticsearch {error.meta.status}"):
        await sink.write(items(3))


class SlowClient(StubClient):
    """Records how many ``bulk`` calls are open at once."""

    def __init__(self) -> None:
        super().__init__()
        self.open = 0
        self.most_open = 0

    async def bulk(self, *, operations: bytes, **kw: Any) -> _Response:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(0.01)
            return await super().bulk(operations=operations, **kw)
        finally:
            self.open -= 1


@pytest.mark.parametrize(("cap", "expected"), [(None, 5), (1, 1), (2, 2)])
async def test_max_in_flight_caps_concurrent_bulk_requests(cap: int | None, expected: int) -> None:
    client = SlowClient()
    sink = ElasticsearchSink(client, max_in_flight=cap)  # type: ignore[arg-type]
    answers = await asyncio.gather(*(sink.write(items(2)) for _ in range(5)))
    assert all(a == {"1-0": DELIVERED, "1-1": DELIVERED} for a in answers)
    assert client.most_open == expected
