"""The Elasticsearch sink: one ``_bulk`` request per batch, an outcome per item.

Whole-request failures are translated here, at the boundary:

* HTTP 413 (request too large) and a 400 whose error type says the request could not be
  read or validated for what a document or its action holds (see
  :data:`PER_DOCUMENT_400_TYPES`) raise :class:`~killkrill.errors.RejectedBatch`: the
  worker splits the batch (see :class:`~killkrill.workers.base.StreamWorker`), the other
  documents are indexed and only the one at fault is dead-lettered, with the reason;
* connection refused / reset, timeouts, a TLS handshake that fails verification, and every
  other HTTP error of the request as a whole (429, 5xx, 401/403, a 400 about the request
  itself...) raise :class:`~killkrill.errors.ServiceUnavailable` - every item of the batch
  is retried, none is acknowledged, none dead-lettered: an operator fixes those. Refused
  credentials (401), missing privileges (403) and failed TLS verification say so and name
  the settings that fix them (:meth:`ElasticsearchSink.describe`), in the error, the log
  line and ``/readyz``.

Per-item outcomes are read by :func:`killkrill.workers.logs.bulk.classify_items`.

The client comes from :func:`killkrill.esclient.elasticsearch_client` (re-exported here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

from elastic_transport import TlsError
from elasticsearch import ApiError, AsyncElasticsearch, TransportError

from killkrill.errors import RejectedBatch, ServiceUnavailable
from killkrill.esclient import credentials_source, elasticsearch_client
from killkrill.workers.base import Item, Outcome
from killkrill.workers.logs.bulk import classify_items, encode_bulk, error_reason
from killkrill.workers.logs.metrics import LogWorkerMetrics
from killkrill.workers.logs.transform import LogDocument

__all__ = [
    "PER_DOCUMENT_400_TYPES",
    "ElasticsearchSink",
    "credentials_source",
    "elasticsearch_client",
]

log = logging.getLogger("killkrill.workers.logs")

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
        credentials: str | None = None,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.refresh = refresh
        self.credentials = credentials
        """What the client authenticates with (:func:`credentials_source`; None: nothing),
        for messages."""
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
            raise ServiceUnavailable(self.describe(exc, "_bulk")) from exc
        except TransportError as exc:
            raise ServiceUnavailable(self.describe(exc, "_bulk")) from exc

    def describe(self, exc: ApiError | TransportError, request: str) -> str:
        """Why ``request`` failed as a whole, and what fixes it when the answer is about
        the credentials (401), privileges (403) or TLS verification."""
        if isinstance(exc, TlsError):
            return (
                f"Elasticsearch TLS verification failed during {request}: {_tls_reason(exc)}. "
                "The cluster's certificate is not signed by a CA the worker trusts, or does "
                "not name the host of elasticsearch.url. Fix: set elasticsearch.ca_file to "
                "the CA that signed it (or fix the host name)"
            )
        if isinstance(exc, TransportError):
            return f"Elasticsearch unreachable during {request} ({type(exc).__name__}): {exc}"
        status = exc.meta.status
        sent = self.credentials or "no credentials"
        if status == 401:
            fix = (
                "set elasticsearch.api_key_file, or elasticsearch.username and "
                "elasticsearch.password_file"
                if self.credentials is None
                else "check that they are current (elasticsearch.api_key_file, or "
                "elasticsearch.username and password_file; the files are read at start: "
                "restart the worker after the Secret changes)"
            )
            return (
                f"Elasticsearch refused the credentials (401 to {request}); the worker sent "
                f"{sent}. Fix: {fix}"
            )
        if status == 403 and _error_type(exc) in ("security_exception", None):
            return (
                f"Elasticsearch denied {request} (403) to {sent}: "
                f"{_api_reason(exc)}. The user or API key needs the index privileges "
                "`create_index` and `index` on the log indices (and the cluster privilege "
                "`manage_index_templates` while install_template is on)"
            )
        return f"Elasticsearch answered {status} to {request}: {_api_reason(exc)}"

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
            return False, f"elasticsearch: {self.describe(exc, '_cluster/health')}"
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


def _tls_reason(exc: BaseException) -> str:
    """What the TLS layer said under ``exc`` (e.g. ``unable to get local issuer
    certificate``), found along its causes; ``str(exc)`` when it said nothing more."""
    seen: BaseException | None = exc
    while seen is not None:
        error = getattr(seen, "certificate_error", seen)  # aiohttp wraps the ssl error
        if isinstance(error, ssl.SSLCertVerificationError):
            return str(error.verify_message or error)
        if isinstance(error, ssl.SSLError):
            return str(error)
        seen = seen.__cause__ or seen.__context__
    return str(exc)


def _error_type(exc: ApiError) -> str | None:
    """The ``error.type`` of an Elasticsearch answer; None when the body is not one (e.g. a
    proxy's own 401/403 page)."""
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return str(body["error"].get("type"))
    return None


def _api_reason(exc: ApiError) -> Any:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        error = body["error"]
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"
    return exc.message
