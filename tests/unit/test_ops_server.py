"""The ops port (workers and receivers): /healthz, /readyz, /metrics over a real socket."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, Counter

from killkrill.ops import OpsServer


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def test_routes() -> None:
    registry = CollectorRegistry()
    Counter("killkrill_test_things", "Things.", registry=registry).inc(3)
    state = {"ready": (True, "redis: ok")}

    async def ready() -> tuple[bool, str]:
        return state["ready"]

    server = OpsServer("127.0.0.1", 0, registry=registry, ready=ready)
    port = await server.start()
    try:
        assert await _get(port, "/healthz") == (200, "ok\n")
        assert await _get(port, "/readyz") == (200, "redis: ok\n")
        state["ready"] = (False, "elasticsearch: down")
        assert await _get(port, "/readyz") == (503, "elasticsearch: down\n")
        status, body = await _get(port, "/metrics")
        assert status == 200
        assert "killkrill_test_things_total 3.0" in body
        assert (await _get(port, "/nope"))[0] == 404
        assert (await _get(port, "/healthz", "POST"))[0] == 405
    finally:
        await server.stop()


async def test_a_failing_readiness_check_answers_503() -> None:
    async def ready() -> tuple[bool, str]:
        raise RuntimeError("kaput")

    server = OpsServer("127.0.0.1", 0, registry=CollectorRegistry(), ready=ready)
    port = await server.start()
    try:
        status, body = await _get(port, "/readyz")
        assert status == 503
        assert "kaput" in body
    finally:
        await server.stop()


async def test_extra_routes_and_a_refresh_before_each_scrape() -> None:
    registry = CollectorRegistry()
    scraped = Counter("killkrill_test_scrapes", "Scrapes seen.", registry=registry)

    async def ready() -> tuple[bool, str]:
        return True, "ready"

    async def refresh() -> None:
        scraped.inc()

    server = OpsServer(
        "127.0.0.1",
        0,
        registry=registry,
        ready=ready,
        refresh=refresh,
        routes={"/openapi.json": lambda: ("application/json", b'{"openapi": "3.1.0"}')},
    )
    port = await server.start()
    try:
        assert await _get(port, "/openapi.json") == (200, '{"openapi": "3.1.0"}')
        assert "killkrill_test_scrapes_total 1.0" in (await _get(port, "/metrics"))[1]
        assert "killkrill_test_scrapes_total 2.0" in (await _get(port, "/metrics"))[1]
        status, body = await _get(port, "/docs")
        assert status == 404 and "/openapi.json" in body
    finally:
        await server.stop()
