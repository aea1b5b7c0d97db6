"""``/healthz``, ``/readyz`` and ``/metrics`` for a receiver process without the HTTP API
(the syslog server), on its small ops port."""

from __future__ import annotations

import orjson
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.receivers.sink import StreamSink

__all__ = ["build_ops_app"]


def build_ops_app(sink: StreamSink, metrics: ReceiverMetrics) -> FastAPI:
    """The ops app: alive, ready (Redis reachable, backlogs under their limit), metrics."""
    app = FastAPI(title="KillKrill syslog receiver (ops)", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.get("/readyz")
    async def readyz() -> Response:
        problems = await sink.check_ready()
        body = {"status": "unready", "problems": problems} if problems else {"status": "ready"}
        return Response(
            orjson.dumps(body), status_code=503 if problems else 200, media_type="application/json"
        )

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
