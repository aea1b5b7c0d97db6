"""The Elasticsearch sink: one ``_bulk`` request per batch, an outcome per item.

Whole-request failures are translated here, at the boundary:

* HTTP 413 (request too large) and a 400 whose error type says the request could not be
  read or validated for what a document or its action holds (see
  :data:`PER_DOCUMENT_400_TYPES`) raise :class:`~killkrill.errors.RejectedBatch`: the
  worker splits the batch (see :class:`~killkrill.workers.base.StreamWorker`), the other
  documents are indexed and only the one at fault is dead-lettered, with the reason;
* connection refused / reset, timeouts, and every other HTTP error of the request as a
  whole (429, 5xx, 401/403, a 400 about the request itself...) raise
  :class:`~killkrill.errors.ServiceUnavailable` - every item of the batch is retried, none
  is acknowledged, none dead-lettered: an operator fixes those.

Per-item outcomes are read by :func:`killkrill.workers.logs.bulk.classify_items`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from elasticsearch import ApiError, AsyncElasticsearch, TransportError
from elasticsearch.serializer import OrjsonSerializer

from killkrill.errors import RejectedBatch, ServiceUnavailable
from killkrill.workers.base import Item, Outcome
from killkrill.workers.logs.bulk import classify_items, encode_bulk, error_reason
from killkrill.workers.logs.metrics import LogWorkerMetrics
from killkrill.workers.logs.transform import LogDocument

__all__ = ["PER_DOCUMENT_400_TYPES", "ElasticsearchSink", "elasticsearch_client"]

_FILTER_PATH = "errors,items.*.status,items.*.error"

PER_DOCUMENT_400_TYPES = frozenset(
    {
        "action_request_validation_exception",  # e.g. an _id over 512 bytes
        "illegal_argument_exception",  # e.g. a malformed action/metadata line
        "x_content_parse_exception",
        "json_parse_exception",
        "parse_exception",
        "mapper_parsing_exception",
        "document_parsing_exception",
    }
)
"""Error types of a 400 answered for a whole ``_bulk`` request that come from what one of
its documents (or action lines) holds. Our request parameters never change, so these are
about the content; any other 400 (e.g. ``media_type_header_exception``, a client/server
version mismatch) is about the request and is retried, never dead-lettered."""


def elasticsearch_client(url: str, *, request_timeout: float) -> AsyncElasticsearch:
    """An async client for the sink: no client-side retries (the worker's retry policy
    decides, and counts attempts), orjson for the answers."""
    return AsyncElasticsearch(
        url,
        request_timeout=request_timeout,
        max_retries=0,
        retry_on_timeout=False,
        serializer=OrjsonSerializer(),
    )


class ElasticsearchSink:
    """Writes :class:`LogDocument` items with ``_bulk`` (``index`` ops, ``_id`` from the entry).

    ``refresh`` is passed to ``_bulk`` (``None``: let the index refresh on its own schedule;
    tests search after ``indices.refresh`` instead). ``max_in_flight`` caps the ``_bulk``
    requests this sink has open at once, whoever calls it (``None``: no cap); a call over
    the cap waits for a request to be answered.
    """

    def __init__(
        self,
        client: AsyncElasticsearch,
        *,
        metrics: LogWorkerMetrics | None = None,
        refresh: bool | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.refresh = refresh
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None

    async def write(self, items: Sequence[Item[LogDocument]]) -> Mapping[str, Outcome]:
        """Index ``items``; answer per entry ID (see :mod:`killkrill.workers.logs.bulk`)."""
        if not items:
            return {}
        try:
            return await self._bulk(items)
        except ApiError as exc:
            if _per_document(exc):
                raise RejectedBatch(error_reason(exc.meta.status, _api_error(exc))) from exc
            raise ServiceUnavailable(
                f"Elasticsearch answered {exc.meta.status} to _bulk: {_api_reason(exc)}"
            ) from exc
        except TransportError as exc:
            raise ServiceUnavailable(
                f"Elasticsearch unreachable during _bulk ({type(exc).__name__}): {exc}"
            ) from exc

    async def _bulk(self, items: Sequence[Item[LogDocument]]) -> dict[str, Outcome]:
        body = encode_bulk([item.record for item in items])
        async with self._slots or contextlib.nullcontext():
            started = time.perf_counter()
            try:
                response = await self.client.bulk(
                    operations=cast(Any, body),  # pre-encoded NDJSON, sent as is
                    filter_path=_FILTER_PATH,
                    refresh=self.refresh,
                    include_source_on_error=False,
                )
            finally:
                if self.metrics is not None:
                    self.metrics.bulk_seconds.observe(time.perf_counter() - started)
        outcomes = classify_items([i.entry.id for i in items], response.body)
        if self.metrics is not None:
            self.metrics.count_outcomes(outcomes.values())
        return outcomes

    async def ready(self, probe_seconds: float = 2.0) -> tuple[bool, str]:
        """Whether the cluster answers and is not red: ``(ok, detail)``.

        Uses ``_cluster/health`` (``GET /`` is refused by some distributions).
        """
        try:
            health = await self.client.options(request_timeout=probe_seconds).cluster.health()
        except (ApiError, TransportError) as exc:
            return False, f"elasticsearch: {type(exc).__name__}: {exc}"
        status = str(health.body.get("status", "unknown"))
        return status in ("green", "yellow"), f"elasticsearch: {status}"

    async def close(self) -> None:
        """Close the client's connections."""
        await self.client.close()


def _per_document(exc: ApiError) -> bool:
    """Whether a whole-request error is about what a document holds (see module doc)."""
    if exc.meta.status == 413:
        return True
    error = _api_error(exc)
    return (
        exc.meta.status == 400
        and isinstance(error, Mapping)
        and error.get("type") in PER_DOCUMENT_400_TYPES
    )


def _api_error(exc: ApiError) -> Any:
    """The ``error`` object of an error answer (or its message when it has none)."""
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return body["error"]
    return exc.message or f"request refused ({exc.meta.status})"


def _api_reason(exc: ApiError) -> Any:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"
    return exc.message
