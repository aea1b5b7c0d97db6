"""The HTTP ingest API: logs, metrics, Prometheus remote_write, health and metrics.

Routes (OpenAPI at ``/openapi.json``, docs at ``/docs``):

* ``POST /api/v1/logs`` - one JSON record, a JSON array, or NDJSON; gzip accepted.
* ``POST /api/v1/metrics`` - the same shapes for samples, or the Prometheus text format
  (``text/plain; version=0.0.4`` or OpenMetrics); ``?stream=NAME`` writes to the declared
  metric stream ``NAME-stream`` (setting ``streams``).
* ``POST /api/v1/write`` and ``/api/v1/prom/write`` - remote_write 1.0 (``?stream=NAME``
  too); a request over ``http.max_batch_records`` samples is written in parts.
* ``GET /healthz``, ``GET /readyz``; ``GET /metrics``, ``/openapi.json``, ``/docs`` unless
  ``http.expose_docs_and_metrics`` is off (the ops port serves them always).

Answers: 200 all accepted; 207 some accepted (``partial: true`` and per-record errors);
422 none valid; 400 the body cannot be read or the stream is not declared; 401/403 auth;
408 the body came too slowly; 413 a size limit; 415 a content type or encoding we do not
read; 429 backpressure or too many requests at once (nothing was written) and 503 Redis
down (the records may have been written), both with Retry-After. A 2xx is sent only after
Redis holds every accepted record.

The hot path reads the raw body and validates with the schemas' fast functions instead of
FastAPI body models; the schemas still appear in the OpenAPI document.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from killkrill import __version__
from killkrill.config import ReceiverSettings
from killkrill.errors import Backpressure, ServiceUnavailable
from killkrill.ops import Route
from killkrill.receivers.auth import Authenticator
from killkrill.receivers.batch import Batch, Item, build_batch, split_json_body
from killkrill.receivers.body import decode_content, read_limited, unsnappy
from killkrill.receivers.errors import PartialAppend, RecordError, RequestError
from killkrill.receivers.limits import record_limits
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.receivers.promtext import parse_prometheus_text
from killkrill.receivers.remote_write import ProtobufError, decode_write_request
from killkrill.receivers.sink import Kind, StreamSink, retry_after_header
from killkrill.schemas import (
    LogRecord,
    MetricSample,
    format_timestamp,
    validate_log,
    validate_metric,
)
from killkrill.streams import async_client

__all__ = ["HttpReceiver", "build_http_app", "ops_routes"]

log = logging.getLogger(__name__)

_JSON_TYPES = frozenset(("application/json", "text/json", ""))
_NDJSON_TYPES = frozenset(
    ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines",
     "application/x-jsonlines", "application/json-lines", "application/jsonlines+json")
)  # fmt: skip
_TEXT_TYPES = frozenset(("text/plain", "application/openmetrics-text"))
_NOTHING_WRITTEN = "nothing was written: send the same request again after Retry-After"
_MAYBE_WRITTEN = (
    "the records may have been accepted; resending may duplicate them unless records carry an id"
)


class RecordErrorModel(BaseModel):
    index: int = Field(description="0-based position of the record in the batch.")
    field: str = Field(description="Dotted path of the offending field ('' = whole record).")
    reason: str = Field(description="What is wrong and how to fix it.")
    line: int | None = Field(default=None, description="1-based line, for line formats.")


class IngestResult(BaseModel):
    accepted: int = Field(description="Records now durable in Redis.")
    rejected: int = Field(description="Records refused (see errors).")
    partial: bool = Field(default=False, description="True when some, not all, were accepted.")
    errors: list[RecordErrorModel] = Field(default_factory=list)
    errors_truncated: bool = Field(default=False, description="More errors than listed.")


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable code, e.g. invalid_json, body_too_large.")
    message: str = Field(description="What went wrong and how to fix it.")
    field: str | None = Field(default=None, description="The header/field at fault.")
    limit: str | None = Field(default=None, description="The setting that sets the limit.")
    written: str | None = Field(
        default=None,
        description="On 429/503: `none` (nothing was written; resend as is), `unknown` (the "
        "append may have run) or `partial` (`accepted` records are durable, the rest may "
        "be).",
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (
            400,
            "The body cannot be read (bad JSON, bad gzip, empty), or the stream is not "
            "declared (setting `streams`).",
        ),
        (401, "No API key, or an unknown one."),
        (403, "The API key may not post to this endpoint or write this stream."),
        (408, "The body did not arrive within http.body_timeout; nothing was written."),
        (413, "A size limit was passed (body, decompressed body, records per batch)."),
        (415, "Content-Type or Content-Encoding not supported."),
        (
            429,
            "Backpressure (the stream's backlog is full) or too many requests at once; "
            "nothing was written: retry after Retry-After seconds.",
        ),
        (
            503,
            "Redis unavailable: the records may have been written (see `written`); retry "
            "after Retry-After seconds. remote_write also answers 503 for backpressure.",
        ),
    )
}
_BATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": IngestResult, "description": "Every record accepted."},
    207: {"model": IngestResult, "description": "Some records accepted; errors list the rest."},
    422: {"model": IngestResult, "description": "No record was valid; errors say why."},
    **_ERRORS,
}


def _body_doc(model: type[BaseModel], text: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    content: dict[str, Any] = {
        "application/json": {"schema": {"oneOf": [ref, {"type": "array", "items": ref}]}},
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "One JSON record per line."}
        },
    }
    if text:
        content["text/plain"] = {
            "schema": {"type": "string", "description": "Prometheus text exposition 0.0.4."}
        }
    return {"requestBody": {"required": True, "content": content}}


class HttpReceiver:
    """Request handlers over one :class:`StreamSink`."""

    def __init__(
        self,
        settings: ReceiverSettings,
        sink: StreamSink,
        auth: Authenticator,
        metrics: ReceiverMetrics,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.auth = auth
        self.metrics = metrics
        self.limits = record_limits(settings.limits)
        self.in_flight = 0

    # -- endpoints --------------------------------------------------------------------
    async def logs(self, request: Request) -> Response:
        return await self._guarded(request, "logs", "/api/v1/logs", self._ingest)

    async def metrics_endpoint(self, request: Request) -> Response:
        return await self._guarded(request, "metrics", "/api/v1/metrics", self._ingest)

    async def remote_write(self, request: Request) -> Response:
        return await self._guarded(request, "metrics", "/api/v1/write", self._remote_write)

    async def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        report = await self.sink.check_ready()
        return Response(
            report.to_json(),
            status_code=200 if report.ready else 503,
            media_type="application/json",
        )

    async def prometheus(self, request: Request) -> Response:
        await self.sink.refresh_backlogs()
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- shared flow ------------------------------------------------------------------
    async def _guarded(
        self,
        request: Request,
        kind: Kind,
        endpoint: str,
        handler: Callable[[Request, Kind], Awaitable[Response]],
    ) -> Response:
        """Run ``handler`` within the concurrency limit, turning refusals into answers."""
        start = time.perf_counter()
        remote_write = endpoint == "/api/v1/write"
        pushback = self.settings.backpressure.remote_write_status if remote_write else 429
        if self.in_flight >= self.settings.http.max_concurrent_requests:
            response = self._busy(kind, pushback)
        else:
            self.in_flight += 1
            self.metrics.http_in_flight.inc()
            try:
                response = await handler(request, kind)
            except RequestError as exc:
                response = self._request_error(kind, exc)
            except (Backpressure, ServiceUnavailable) as exc:
                status = pushback if isinstance(exc, Backpressure) else 503
                response = self._unavailable(kind, exc, status)
            finally:
                self.in_flight -= 1
                self.metrics.http_in_flight.dec()
        self._observe(endpoint, response.status_code, start)
        return response

    async def _ingest(self, request: Request, kind: Kind) -> Response:
        headers = request.headers
        client = self.auth.check(headers, kind)
        stream = self.sink.resolve(kind, request.query_params.get("stream"))
        client.check_stream(stream.name)
        body = await self._read_body(request, "http")
        body = decode_content(
            body, headers.get("content-encoding"), self.settings.http.max_decompressed_bytes
        )
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        http = self.settings.http
        items: list[Item]
        if media in _JSON_TYPES or media in _NDJSON_TYPES or media.endswith("+json"):
            items = split_json_body(
                body, ndjson=media in _NDJSON_TYPES, max_records=http.max_batch_records
            )
        elif kind == "metrics" and media in _TEXT_TYPES:
            items = parse_prometheus_text(body)
            if len(items) > http.max_batch_records:
                raise RequestError(
                    413,
                    "too_many_records",
                    f"the body holds {len(items)} samples; the limit is "
                    f"{http.max_batch_records} (http.max_batch_records); split it",
                    limit="http.max_batch_records",
                )
            if not items:
                raise RequestError(400, "empty_body", "the exposition holds no samples")
        else:
            allowed = "application/json or application/x-ndjson"
            if kind == "metrics":
                allowed += " or text/plain; version=0.0.4 (Prometheus text format)"
            raise RequestError(
                415,
                "unsupported_media_type",
                f"Content-Type '{media}' is not supported here; send {allowed}",
                field="Content-Type",
            )
        now = datetime.now(UTC)
        window = self.limits.window(now)
        validate: Callable[[Any], dict[str, Any]]
        if kind == "logs":
            validate = partial(validate_log, limits=self.limits, window=window)
        else:
            validate = partial(
                validate_metric, limits=self.limits, now=format_timestamp(now), window=window
            )
        batch = build_batch(items, validate, max_record_bytes=self.limits.max_record_bytes or 0)
        if batch.payloads:
            await self.sink.append(stream, batch.payloads)
        return self._batch_response(kind, "http", batch)

    async def _remote_write(self, request: Request, kind: Kind) -> Response:
        client = self.auth.check(request.headers, "remote_write")
        stream = self.sink.resolve("metrics", request.query_params.get("stream"))
        client.check_stream(stream.name)
        media = request.headers.get("content-type", "")
        if "proto=io.prometheus.write.v2" in media:
            raise RequestError(
                415,
                "unsupported_media_type",
                "remote_write 2.0 is not supported; configure the sender for remote_write "
                "1.0 (protobuf_message: prometheus.WriteRequest)",
                field="Content-Type",
            )
        if media.split(";", 1)[0].strip().lower() not in ("application/x-protobuf", ""):
            raise RequestError(
                415,
                "unsupported_media_type",
                f"Content-Type '{media}' is not remote_write; send application/x-protobuf",
                field="Content-Type",
            )
        raw = await self._read_body(request, "remote_write")
        encoding = request.headers.get("content-encoding", "snappy").strip().lower()
        if encoding != "snappy":
            raise RequestError(
                415,
                "unsupported_encoding",
                f"Content-Encoding '{encoding}' is not remote_write; send snappy",
                field="Content-Encoding",
            )
        if not raw:
            raise RequestError(400, "empty_body", "the remote_write body is empty")
        body = unsnappy(raw, self.settings.http.max_decompressed_bytes)
        try:
            decoded = decode_write_request(body)
        except ProtobufError as exc:
            raise RequestError(
                400,
                "invalid_protobuf",
                f"the body is not a remote_write WriteRequest ({exc})",
            ) from None
        if decoded.non_finite:
            self.metrics.rejected.labels(kind="metrics", reason="non_finite").inc(
                decoded.non_finite
            )
        if decoded.histograms:
            self.metrics.rejected.labels(kind="metrics", reason="native_histogram").inc(
                decoded.histograms
            )
        validate = partial(validate_metric, limits=self.limits, window=self.limits.window())
        batch = build_batch(
            [Item(s) for s in decoded.samples],
            validate,
            max_record_bytes=self.limits.max_record_bytes or 0,
        )
        if batch.payloads:
            # Prometheus drops a request answered 413: one over the batch limit is written
            # in parts instead (a 2xx still means every part is in Redis).
            await self.sink.append(
                stream, batch.payloads, part=self.settings.http.max_batch_records
            )
        if not batch.errors:
            self.metrics.accepted.labels(kind="metrics", protocol="remote_write").inc(
                len(batch.payloads)
            )
            return Response(status_code=204)
        if not batch.payloads:
            # Nothing valid: a 4xx tells Prometheus not to retry what can never succeed.
            return self._batch_response("metrics", "remote_write", batch, status=400)
        return self._batch_response("metrics", "remote_write", batch, status=200)

    async def _read_body(self, request: Request, protocol: str) -> bytes:
        http = self.settings.http
        raw = await read_limited(
            request.stream(),
            request.headers.get("content-length"),
            http.max_body_bytes,
            within=http.body_timeout,
        )
        self.metrics.received_bytes.labels(protocol=protocol).inc(len(raw))
        return raw

    # -- responses --------------------------------------------------------------------
    def _batch_response(
        self, kind: Kind, protocol: str, batch: Batch, *, status: int | None = None
    ) -> Response:
        accepted = len(batch.payloads)
        rejected = len(batch.errors)
        if accepted:
            self.metrics.accepted.labels(kind=kind, protocol=protocol).inc(accepted)
        if not rejected:
            return _json(status or 200, {"accepted": accepted, "rejected": 0})
        self.metrics.rejected.labels(kind=kind, reason="invalid").inc(rejected)
        limit = self.settings.http.max_errors_reported
        errors = batch.errors[:limit]
        body: dict[str, Any] = {
            "accepted": accepted,
            "rejected": rejected,
            "partial": accepted > 0,
            "errors": [e.to_dict() for e in errors],
        }
        if rejected > limit:
            body["errors_truncated"] = True
        if not accepted:
            body["error"] = "invalid_records"
            body["message"] = _summary(errors[0], rejected)
        return _json(status or (207 if accepted else 422), body)

    def _request_error(self, kind: Kind, exc: RequestError) -> Response:
        self.metrics.rejected.labels(kind=kind, reason=exc.code).inc()
        return _json(exc.status, exc.body(), exc.headers)

    def _busy(self, kind: Kind, status: int) -> Response:
        self.metrics.rejected.labels(kind=kind, reason="too_many_requests").inc()
        limit = self.settings.http.max_concurrent_requests
        return _json(
            status,
            {
                "error": "too_many_requests",
                "message": f"{limit} requests are being handled (http.max_concurrent_requests); "
                f"{_NOTHING_WRITTEN}",
                "limit": "http.max_concurrent_requests",
                "written": "none",
            },
            {"Retry-After": str(max(1, round(self.settings.backpressure.retry_after)))},
        )

    def _unavailable(
        self, kind: Kind, exc: Backpressure | ServiceUnavailable, status: int
    ) -> Response:
        body: dict[str, Any]
        if isinstance(exc, Backpressure):
            self.metrics.rejected.labels(kind=kind, reason="backpressure").inc()
            body = {
                "error": "backpressure",
                "message": f"{exc}; {_NOTHING_WRITTEN}",
                "limit": "backpressure.max_backlog",
                "written": "none",
            }
        else:
            self.metrics.rejected.labels(kind=kind, reason="unavailable").inc()
            log.warning("append failed: %s", exc)
            body = {"error": "redis_unavailable", "message": f"{exc}; {_MAYBE_WRITTEN}"}
            if isinstance(exc, PartialAppend):
                self.metrics.accepted.labels(kind=kind, protocol="remote_write").inc(exc.written)
                body.update(written="partial", accepted=exc.written)
                body["message"] = f"{exc}; the first {exc.written} were accepted, {_MAYBE_WRITTEN}"
            else:
                body["written"] = "unknown"
        return _json(status, body, {"Retry-After": retry_after_header(exc)})

    def _observe(self, endpoint: str, status: int, start: float) -> None:
        self.metrics.request_seconds.labels(endpoint=endpoint, status=str(status)).observe(
            time.perf_counter() - start
        )


def _summary(first: RecordError, count: int) -> str:
    where = f"record {first.index}" + (f" field {first.field}" if first.field else "")
    more = f" (and {count - 1} more)" if count > 1 else ""
    return f"no record was valid: {where}: {first.reason}{more}"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def build_http_app(
    settings: ReceiverSettings,
    *,
    client: aioredis.Redis | None = None,
    metrics: ReceiverMetrics | None = None,
    auth: Authenticator | None = None,
    sink: StreamSink | None = None,
) -> FastAPI:
    """The ASGI app. Without ``client`` (or ``sink``) one is made from ``settings.redis`` at
    startup and closed at shutdown; without ``auth`` the keys are read from
    ``settings.auth`` once. A given ``sink`` brings its client and metrics."""
    if sink is not None:
        client, metrics = sink.client, sink.metrics
    metrics = metrics or ReceiverMetrics()
    own_client = client is None
    redis_client = client or async_client(
        settings.redis.url, socket_timeout=settings.redis.socket_timeout
    )
    if sink is None:
        sink = StreamSink.from_settings(redis_client, settings, metrics)
    auth = auth or Authenticator(settings.auth, settings.streams)
    receiver = HttpReceiver(settings, sink, auth, metrics)
    public = settings.http.expose_docs_and_metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "http receiver ready",
            extra={"streams": [s.key for s in sink], "auth": receiver.auth.enabled},
        )
        yield
        if own_client:
            await redis_client.aclose()

    app = FastAPI(
        title="KillKrill receiver",
        version=__version__,
        description=__doc__,
        lifespan=lifespan,
        openapi_url="/openapi.json" if public else None,
        docs_url="/docs" if public else None,
        redoc_url="/redoc" if public else None,
    )
    app.state.receiver = receiver
    app.post(
        "/api/v1/logs",
        summary="Ingest log records",
        responses=_BATCH_RESPONSES,
        openapi_extra=_body_doc(LogRecord, text=False),
    )(receiver.logs)
    app.post(
        "/api/v1/metrics",
        summary="Ingest metric samples",
        responses=_BATCH_RESPONSES,
        openapi_extra=_body_doc(MetricSample, text=True),
    )(receiver.metrics_endpoint)
    rw_doc = {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    }
    for path in ("/api/v1/write", "/api/v1/prom/write") if settings.http.remote_write else ():
        app.post(
            path,
            summary="Prometheus remote_write 1.0 (snappy protobuf WriteRequest)",
            status_code=204,
            responses={204: {"description": "All samples accepted."}, **_ERRORS},
            openapi_extra=rw_doc,
        )(receiver.remote_write)
    app.get("/healthz", summary="Alive")(receiver.healthz)
    app.get("/readyz", summary="Redis reachable; reports each stream's backlog")(receiver.readyz)
    if public:
        app.get("/metrics", summary="The receiver's own Prometheus metrics")(receiver.prometheus)

    # The schemas are not FastAPI body models (hot path); register them for the docs.
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (LogRecord, MetricSample):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def ops_routes(app: FastAPI) -> dict[str, Route]:
    """``/openapi.json`` and ``/docs`` of ``app`` for the ops port (served there whether or
    not the ingest port shows them)."""
    docs = get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs").body
    return {
        "/openapi.json": lambda: ("application/json", orjson.dumps(app.openapi())),
        "/docs": lambda: ("text/html; charset=utf-8", bytes(docs)),
    }
