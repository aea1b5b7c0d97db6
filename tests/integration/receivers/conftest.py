"""Receiver fixtures: the HTTP app and the syslog server, in-process, over real Redis.

``redis_client`` / ``redis_url`` come from tests/integration/conftest.py (the test database is
flushed before and after each test). The app runs in the test's event loop and is spoken to
over ASGI with httpx; tests that need a real socket (CLI, shippers) start a real process.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import redis.asyncio as aioredis
from killkrill_command import KillkrillProcess

from killkrill.config import ReceiverSettings
from killkrill.receivers.http_app import build_http_app
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.receivers.sink import StreamSink
from killkrill.receivers.syslog_server import SyslogServer
from killkrill.streams import stream_names

MakeSettings = Callable[..., ReceiverSettings]


def _free_port() -> int:
    """A TCP port free on loopback right now (for processes we start)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def entries(client: redis.Redis, stream: str) -> list[dict[str, Any]]:
    """Every record on ``stream``, decoded, checking each entry's shape on the way."""
    out = []
    for _id, fields in client.xrange(stream):
        assert set(fields) == {b"data", b"v"}, fields
        assert fields[b"v"] == b"1"
        out.append(orjson.loads(fields[b"data"]))
    return out


@pytest.fixture
def read_stream(redis_client: redis.Redis) -> Callable[[str], list[dict[str, Any]]]:
    """``read_stream(name)``: the decoded records on a stream (entry shape checked)."""
    return lambda stream: entries(redis_client, stream)


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """``free_port()``: another free loopback port."""
    return _free_port


@pytest.fixture
def port() -> int:
    """A free loopback port."""
    return _free_port()


@pytest.fixture
def make_settings(redis_url: str) -> MakeSettings:
    """Settings for one test: auth off unless given, Redis from REDIS_URL."""

    def make(**overrides: Any) -> ReceiverSettings:
        return ReceiverSettings.load(
            None, {"redis.url": redis_url, "auth.enabled": False, **overrides}
        )

    return make


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def make_client(
    redis_client: redis.Redis, aredis: aioredis.Redis, make_settings: MakeSettings
) -> Callable[..., httpx.AsyncClient]:
    """``make_client(**settings overrides)``: an httpx client over the receiver app."""

    def make(**overrides: Any) -> httpx.AsyncClient:
        app = build_http_app(make_settings(**overrides), client=aredis)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")

    return make


@pytest.fixture
async def client(make_client: Callable[..., httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
    """The receiver with default settings and auth off."""
    async with make_client() as c:
        yield c


@pytest.fixture
async def start_syslog(
    redis_client: redis.Redis, aredis: aioredis.Redis, make_settings: MakeSettings
) -> AsyncIterator[Callable[..., Any]]:
    """``await start_syslog(**overrides)``: a running SyslogServer on free loopback ports,
    stopped (drained) after the test."""
    servers: list[SyslogServer] = []

    async def start(**overrides: Any) -> SyslogServer:
        settings = make_settings(**{"syslog.host": "127.0.0.1", "syslog.port": 0, **overrides})
        metrics = ReceiverMetrics()
        names = stream_names(settings.pipeline, settings.redis.key_prefix)
        sink = StreamSink(aredis, names, settings.streams, settings.backpressure, metrics)
        server = SyslogServer(settings, sink, metrics)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


class ReceiverProcess(KillkrillProcess):
    """A ``killkrill receiver ...`` subprocess on loopback ports, started once it answers
    ``health_url``."""

    def __init__(
        self, args: list[str], env: dict[str, str], health_url: str, log_path: str
    ) -> None:
        super().__init__(["receiver", *args], env, log_path)
        self.args = args
        self.health_url = health_url
        self.ops_port = int(env["KILLKRILL_OPS__PORT"])
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited early:\n{self.output()}")
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.close(grace=1)
                raise RuntimeError(f"receiver did not become healthy:\n{self.output()}")
            time.sleep(0.1)


@pytest.fixture
def receiver_process(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., ReceiverProcess]]:
    """``receiver_process("http", "--port", ..., health_url=...)``: stopped after the test."""
    started: list[ReceiverProcess] = []

    def start(
        *args: str, health_url: str | None = None, env: dict[str, str] | None = None
    ) -> ReceiverProcess:
        """Without ``health_url`` the process is waited for on its ops port (``ops_port``,
        a free one unless ``env`` sets ``KILLKRILL_OPS__PORT``)."""
        environ = {
            **os.environ,
            "REDIS_URL": redis_url,
            "KILLKRILL_OPS__PORT": str(_free_port()),
            **(env or {}),
        }
        if health_url is None:
            health_url = f"http://127.0.0.1:{environ['KILLKRILL_OPS__PORT']}/healthz"
        log_path = str(tmp_path / f"receiver-{len(started)}.log")
        proc = ReceiverProcess(list(args), environ, health_url, log_path)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.close()
