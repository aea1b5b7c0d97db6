"""Slow and greedy HTTP clients over real sockets (defect 9): a concurrency limit answered
429/503 with Retry-After, a deadline on request headers (slow-loris) and on the body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis

from killkrill.receivers.http_app import HttpReceiver, build_http_app
from killkrill.receivers.http_server import build_http_server

LOG = {"timestamp": "2024-01-06T12:00:00Z", "service": "api", "level": "info", "message": "m"}
BODY = orjson.dumps(LOG)
StartHttp = Callable[..., Awaitable[tuple[int, HttpReceiver]]]


@pytest.fixture
async def start_http(
    aredis: aioredis.Redis, make_settings: Callable[..., Any]
) -> AsyncIterator[StartHttp]:
    """``await start_http(**overrides)``: the receiver under uvicorn on a free loopback port,
    in this loop; returns the port and the handlers. Stopped after the test."""
    running: list[tuple[Any, asyncio.Task[None]]] = []

    async def start(**overrides: Any) -> tuple[int, HttpReceiver]:
        settings = make_settings(**{"http.host": "127.0.0.1", "http.port": 0, **overrides})
        app = build_http_app(settings, client=aredis)
        server = build_http_server(app, settings.http)
        task = asyncio.create_task(server.serve())
        running.append((server, task))
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        port: int = server.servers[0].sockets[0].getsockname()[1]
        return port, app.state.receiver

    yield start
    for server, task in running:
        server.should_exit = True
        await asyncio.wait_for(task, 40)


async def until(check: Callable[[], object], what: str, within: float = 10) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def head(path: str, length: int, content_type: str = "application/json") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: r\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


async def test_past_the_concurrency_limit_requests_get_429_with_retry_after(
    start_http: StartHttp, redis_client: redis.Redis
) -> None:
    port, receiver = await start_http(
        **{"http.max_concurrent_requests": 2, "backpressure.retry_after": 2}
    )
    slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for _reader, writer in slow:  # headers and half a body: each holds a slot
        writer.write(head("/api/v1/logs", len(BODY)) + BODY[:10])
        await writer.drain()
    await until(lambda: receiver.in_flight == 2, "two requests in flight")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        refused = await c.post("/api/v1/logs", content=BODY)
        remote_write = await c.post(
            "/api/v1/write",
            content=b"x",
            headers={"content-type": "application/x-protobuf", "content-encoding": "snappy"},
        )
        probe = await c.get("/readyz")
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "2"
        body = refused.json()
        assert body["error"] == "too_many_requests" and body["written"] == "none"
        assert "http.max_concurrent_requests" in body["message"]
        assert remote_write.status_code == 503  # Prometheus retries 5xx
        assert remote_write.headers["retry-after"] == "2"
        assert probe.status_code == 200, "probes are not ingest requests"
        assert redis_client.dbsize() == 0
        for reader, writer in slow:  # the held requests complete normally
            writer.write(BODY[10:])
            await writer.drain()
            assert (await reader.readuntil(b"\r\n")).startswith(b"HTTP/1.1 200")
            writer.close()
        await until(lambda: receiver.in_flight == 0, "the slots to be freed")
        assert (await c.post("/api/v1/logs", content=BODY)).status_code == 200
    assert redis_client.xlen("logs-stream") == 3


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /api/v1/logs HTTP/1.1\r\nHost: r\r\nContent-Le"],
    ids=["nothing", "half-the-headers"],
)
async def test_headers_that_do_not_arrive_in_time_get_408_and_the_connection_closed(
    start_http: StartHttp, sent: bytes
) -> None:
    port, _ = await start_http(**{"http.header_timeout": 0.5})
    loop = asyncio.get_running_loop()
    started = loop.time()  # the deadline runs from the connection
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(sent)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert loop.time() - started >= 0.4
    writer.close()


async def test_a_kept_alive_connection_gets_the_header_deadline_for_each_request(
    start_http: StartHttp, redis_client: redis.Redis
) -> None:
    port, _ = await start_http(**{"http.header_timeout": 0.5, "http.keep_alive_timeout": 30})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head("/api/v1/logs", len(BODY)) + BODY)
    await writer.drain()
    first = await reader.readuntil(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200"), first
    await reader.readexactly(int(first.split(b"content-length: ")[1].split(b"\r\n")[0]))
    writer.write(b"POST /api/v1/logs HTTP/1.1\r\nHo")  # the next request stalls
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    writer.close()
    assert redis_client.xlen("logs-stream") == 1


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_nothing_is_written(
    start_http: StartHttp, redis_client: redis.Redis
) -> None:
    port, receiver = await start_http(**{"http.body_timeout": 0.5})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head("/api/v1/logs", len(BODY)) + BODY[:10])
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # answered, then closed
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", answer
    payload = orjson.loads(rest.partition(b"\r\n\r\n")[2])
    assert payload["error"] == "body_timeout" and payload["limit"] == "http.body_timeout"
    assert b"connection: close" in rest.lower()
    writer.close()
    assert receiver.in_flight == 0
    assert redis_client.dbsize() == 0
