"""The HTTP ingest API: logs, metrics, Prometheus remote_write, health and metrics.

Routes (OpenAPI at ``/openapi.json``, docs at ``/docs``):

* ``POST /api/v1/logs`` - one JSON record, a JSON array, or NDJSON; gzip accepted.
* ``POST /api/v1/metrics`` - the same shapes for samples, or the Prometheus text format
  (``text/plain; version=0.0.4`` or OpenMetrics); ``?stream=NAME`` writes to the named
  metric stream ``NAME-stream``.
* ``POST /api/v1/write`` and ``/api/v1/prom/write`` - remote_write 1.0.
* ``GET /healthz``, ``GET /readyz``, ``GET /metrics``.

Answers: 200 all accepted; 207 some accepted (``partial: true`` and per-record errors);
422 none valid; 400 the body cannot be read; 401/403 auth; 413 a size limit; 415 a content
type or encoding we do not read; 429 backpressure and 503 Redis down, both with Retry-After.
A 2xx is sent only after Redis holds every accepted record.

The hot path reads the raw body and validates with the schemas' fast functions instead of
FastAPI body models; the schemas still appear in the OpenAPI document.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson
import redis.asyncio as aioredis
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from killkrill import __version__
from killkrill.config import ReceiverSettings
from killkrill.errors import Backpressure, ServiceUnavailable
from killkrill.receivers.auth import Authenticator
from killkrill.receivers.batch import Batch, Item, build_batch, split_json_body
from killkrill.receivers.body import decode_content, read_limited, unsnappy
from killkrill.receivers.errors import RecordError, RequestError
from killkrill.receivers.metrics import ReceiverMetrics
from killkrill.receivers.promtext import parse_prometheus_text
from killkrill.receivers.remote_write import ProtobufError, decode_write_request
from killkrill.receivers.sink import Kind, StreamSink, retry_after_header
from killkrill.schemas import (
    LogRecord,
    MetricSample,
    RecordLimits,
    format_timestamp,
    validate_log,
    validate_metric,
)
from killkrill.streams import StreamNames, async_client

__all__ = ["HttpReceiver", "build_http_app"]

log = logging.getLogger(__name__)

_JSON_TYPES = frozenset(("application/json", "text/json", ""))
_NDJSON_TYPES = frozenset(
    ("application/x-ndjson", "application/ndjson", "application/jsonl", "application/jsonlines",
     "application/x-jsonlines", "application/json-lines", "application/jsonlines+json")
)  # fmt: skip
_TEXT_TYPES = frozenset(("text/plain", "application/openmetrics-text"))
_STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,100}")


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


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "The body cannot be read (bad JSON, bad gzip, empty)."),
        (401, "No API key, or an unknown one."),
        (403, "The API key may not post to this endpoint."),
        (413, "A size limit was passed (body, decompressed body, records per batch)."),
        (415, "Content-Type or Content-Encoding not supported."),
        (429, "Backpressure: the stream's backlog is full; retry after Retry-After seconds."),
        (503, "Redis unavailable; retry after Retry-After seconds."),
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
        lim = settings.limits
        self.limits = RecordLimits(
            max_record_bytes=lim.max_record_bytes,
            max_message_length=lim.max_message_length,
            max_service_length=lim.max_service_length,
            max_fields=lim.max_fields,
            max_name_length=lim.max_name_length,
            max_labels=lim.max_labels,
            max_label_value_length=lim.max_label_value_length,
        )
        self._validate_log = partial(validate_log, limits=self.limits)

    # -- endpoints --------------------------------------------------------------------
    async def logs(self, request: Request) -> Response:
        return await self._handle(request, "logs", "/api/v1/logs")

    async def metrics_endpoint(self, request: Request) -> Response:
        return await self._handle(request, "metrics", "/api/v1/metrics")

    async def remote_write(self, request: Request) -> Response:
        start = time.perf_counter()
        try:
            response = await self._remote_write(request)
        except RequestError as exc:
            response = self._request_error("metrics", exc)
        except (Backpressure, ServiceUnavailable) as exc:
            status = self.settings.backpressure.remote_write_status
            response = self._unavailable(
                "metrics", exc, status if isinstance(exc, Backpressure) else 503
            )
        self._observe("/api/v1/write", response.status_code, start)
        return response

    async def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        problems = await self.sink.check_ready()
        if problems:
            return _json(503, {"status": "unready", "problems": problems})
        return _json(200, {"status": "ready"})

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # -- shared flow ------------------------------------------------------------------
    async def _handle(self, request: Request, kind: Kind, endpoint: str) -> Response:
        start = time.perf_counter()
        try:
            response = await self._ingest(request, kind)
        except RequestError as exc:
            response = self._request_error(kind, exc)
        except (Backpressure, ServiceUnavailable) as exc:
            response = self._unavailable(kind, exc, 429 if isinstance(exc, Backpressure) else 503)
        self._observe(endpoint, response.status_code, start)
        return response

    async def _ingest(self, request: Request, kind: Kind) -> Response:
        headers = request.headers
        self.auth.check(headers, kind)
        stream = self._stream_param(request, kind)
        body = await self._read_body(request)
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
        validate: Callable[[Any], dict[str, Any]]
        if kind == "logs":
            validate = self._validate_log
        else:
            validate = partial(
                validate_metric, limits=self.limits, now=format_timestamp(datetime.now(UTC))
            )
        batch = build_batch(items, validate, max_record_bytes=self.limits.max_record_bytes or 0)
        if batch.payloads:
            await self.sink.append(kind, batch.payloads, stream=stream)
        return self._batch_response(kind, "http", batch)

    async def _remote_write(self, request: Request) -> Response:
        self.auth.check(request.headers, "remote_write")
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
        raw = await read_limited(
            request.stream(),
            request.headers.get("content-length"),
            self.settings.http.max_body_bytes,
        )
        self.metrics.received_bytes.labels(protocol="remote_write").inc(len(raw))
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
        if len(decoded.samples) > self.settings.http.max_batch_records:
            raise RequestError(
                413,
                "too_many_records",
                f"the request holds {len(decoded.samples)} samples; the limit is "
                f"{self.settings.http.max_batch_records} (http.max_batch_records); lower "
                "queue_config.max_samples_per_send",
                limit="http.max_batch_records",
            )
        validate = partial(validate_metric, limits=self.limits)
        batch = build_batch(
            [Item(s) for s in decoded.samples],
            validate,
            max_record_bytes=self.limits.max_record_bytes or 0,
        )
        if batch.payloads:
            await self.sink.append("metrics", batch.payloads)
        if not batch.errors:
            self.metrics.accepted.labels(kind="metrics", protocol="remote_write").inc(
                len(batch.payloads)
            )
            return Response(status_code=204)
        if not batch.payloads:
            # Nothing valid: a 4xx tells Prometheus not to retry what can never succeed.
            return self._batch_response("metrics", "remote_write", batch, status=400)
        return self._batch_response("metrics", "remote_write", batch, status=200)

    async def _read_body(self, request: Request) -> bytes:
        http = self.settings.http
        raw = await read_limited(
            request.stream(), request.headers.get("content-length"), http.max_body_bytes
        )
        self.metrics.received_bytes.labels(protocol="http").inc(len(raw))
        return decode_content(
            raw, request.headers.get("content-encoding"), http.max_decompressed_bytes
        )

    def _stream_param(self, request: Request, kind: Kind) -> str | None:
        name = request.query_params.get("stream")
        if name is None:
            return None
        if kind != "metrics" or not _STREAM_NAME.fullmatch(name):
            raise RequestError(
                400,
                "invalid_stream",
                "the stream parameter names a metric stream: 1-100 letters, digits, '_', '.', "
                "'-' (it writes to <name>-stream), and only on /api/v1/metrics",
                field="stream",
            )
        return self.sink.stream_for("metrics", name)

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

    def _unavailable(
        self, kind: Kind, exc: Backpressure | ServiceUnavailable, status: int
    ) -> Response:
        reason = "backpressure" if isinstance(exc, Backpressure) else "unavailable"
        self.metrics.rejected.labels(kind=kind, reason=reason).inc()
        if reason == "unavailable":
            log.warning("append failed: %s", exc)
        code = "backpressure" if reason == "backpressure" else "redis_unavailable"
        return _json(
            status,
            {"error": code, "message": f"{exc}; nothing was accepted, send the same request again"},
            {"Retry-After": retry_after_header(exc)},
        )

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
) -> FastAPI:
    """The ASGI app. Without ``client`` one is made from ``settings.redis`` at startup and
    closed at shutdown."""
    metrics = metrics or ReceiverMetrics()
    own_client = client is None
    redis_client = client or async_client(
        settings.redis.url, socket_timeout=settings.redis.socket_timeout
    )
    names = (
        StreamNames(prefix=settings.redis.key_prefix)
        if settings.redis.key_prefix
        else (StreamNames.for_pipeline(settings.pipeline))
    )
    sink = StreamSink(
        redis_client,
        names,
        settings.backpressure,
        metrics,
        fsync_timeout=settings.append_fsync_timeout,
    )
    receiver = HttpReceiver(settings, sink, Authenticator(settings.auth), metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "http receiver ready",
            extra={"streams": [names.logs, names.metrics], "auth": receiver.auth.enabled},
        )
        yield
        if own_client:
            await redis_client.aclose()

    app = FastAPI(
        title="KillKrill receiver",
        version=__version__,
        description=__doc__,
        lifespan=lifespan,
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
    for path in ("/api/v1/write", "/api/v1/prom/write"):
        app.post(
            path,
            summary="Prometheus remote_write 1.0 (snappy protobuf WriteRequest)",
            status_code=204,
            responses={204: {"description": "All samples accepted."}, **_ERRORS},
            openapi_extra=rw_doc,
        )(receiver.remote_write)
    app.get("/healthz", summary="Alive")(receiver.healthz)
    app.get("/readyz", summary="Redis reachable and backlogs under their limit")(receiver.readyz)
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
