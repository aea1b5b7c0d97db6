"""The Elasticsearch sink: one ``_bulk`` request per batch, an outcome per item.

Whole-request failures are translated here, at the boundary:

* connection refused / reset, timeouts, and HTTP 429 / 5xx / other non-413 errors of the
  request as a whole raise :class:`~killkrill.errors.ServiceUnavailable` - every item of the
  batch is retried, none is acknowledged;
* HTTP 413 (request too large) splits the batch in halves and writes each; a single
  document that is still too large is rejected (dead-lettered) with the reason.

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

from killkrill.errors import ServiceUnavailable
from killkrill.workers.base import Item, Outcome, Reject
from killkrill.workers.logs.bulk import classify_items, encode_bulk, error_reason
from killkrill.workers.logs.metrics import LogWorkerMetrics
from killkrill.workers.logs.transform import LogDocument

__all__ = ["ElasticsearchSink", "elasticsearch_client"]

_FILTER_PATH = "errors,items.*.status,items.*.error"


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
            if exc.meta.status == 413:
                return await self._split(items, exc)
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

    async def _split(self, items: Sequence[Item[LogDocument]], exc: ApiError) -> dict[str, Outcome]:
        if len(items) == 1:
            reason = f"document too large for Elasticsearch: {error_reason(413, _api_reason(exc))}"
            return {items[0].entry.id: Reject(reason)}
        half = len(items) // 2
        first = await self.write(items[:half])
        second = await self.write(items[half:])
        return {**first, **second}

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


def _api_reason(exc: ApiError) -> Any:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"
    return exc.message
