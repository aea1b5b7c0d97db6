"""The KillKrill exception tree: every error we raise on purpose is one of these.

::

    KillKrillError
    ├── ConfigError              settings are invalid or missing; fix the config, do not retry
    ├── PermanentError           retrying the same input can never succeed
    │   ├── ValidationError      a record is malformed (names the field and the reason)
    │   │   └── LogParseError    a log stream entry cannot be parsed into a log record
    │   └── RejectedBatch        a sink refused a whole write for what some record in it holds
    ├── RetryableError           the same call may succeed later (carries ``delay`` in seconds)
    │   ├── ServiceUnavailable   a dependency (Redis, PostgreSQL, Elasticsearch, the Kubernetes
    │   │                        API) is unreachable
    │   └── Backpressure         the pipeline is full; the caller should wait ``delay`` seconds
    │       └── DeadLetterFull   a dead-letter stream is at its bound; entries wait, pending
    ├── KubernetesApiError       the Kubernetes API refused a request (carries ``status``)
    └── DevServiceError          the local service manager could not install or start a service

Third-party exceptions (redis, elasticsearch, psycopg2) are translated at the module that
talks to that service, with ``raise ... from exc`` so the original stays in the traceback.
"""

from __future__ import annotations

__all__ = [
    "Backpressure",
    "ConfigError",
    "DeadLetterFull",
    "DevServiceError",
    "KillKrillError",
    "KubernetesApiError",
    "LogParseError",
    "PermanentError",
    "RejectedBatch",
    "RetryableError",
    "ServiceUnavailable",
    "ValidationError",
]


class KillKrillError(Exception):
    """Root of every error KillKrill raises on purpose."""


class ConfigError(KillKrillError):
    """Raised when settings are invalid; the message names the setting and how to fix it."""


class PermanentError(KillKrillError):
    """Raised when retrying the same input can never succeed: dead-letter it instead."""


class ValidationError(PermanentError):
    """Raised when a record is malformed.

    ``field`` is the dotted path of the offending field (``""`` for the record as a whole)
    and ``reason`` says what is wrong with it in words a person can act on.
    """

    def __init__(self, reason: str, *, field: str = "", index: int | None = None) -> None:
        self.reason = reason
        self.field = field
        self.index = index
        where = f"{field}: " if field else ""
        at = f"record {index}: " if index is not None else ""
        super().__init__(f"{at}{where}{reason}")


class LogParseError(ValidationError):
    """Raised when a log stream entry cannot be parsed into a log record (bad JSON, missing
    required fields). The worker dead-letters the entry before raising."""


class RejectedBatch(PermanentError):
    """Raised by a sink that refused a whole write for good because of what one or more of
    its records hold (a PostgreSQL data exception, an Elasticsearch 400 or 413 answered for
    the request): the same records would be refused again, but the others alone would not.
    The worker splits the batch until the records at fault are alone, and dead-letters only
    those, with ``reason`` (the sink's own words)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RetryableError(KillKrillError):
    """Raised when the same call may succeed later; ``delay`` is a hint in seconds."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        self.delay = delay
        super().__init__(message)


class ServiceUnavailable(RetryableError):
    """Raised when Redis, PostgreSQL or Elasticsearch cannot be reached or timed out."""


class Backpressure(RetryableError):
    """Raised when a stream's unread backlog is over its limit; retry after ``delay``."""


class DeadLetterFull(Backpressure):
    """Raised when entries cannot be dead-lettered because the dead-letter stream holds its
    configured bound (``consumer.max_dead_letters``): they stay pending, and the worker
    stops reading until the dead letters are replayed or purged (``killkrill dlq``)."""

    def __init__(self, message: str, *, delay: float = 5.0) -> None:
        super().__init__(message, delay=delay)


class KubernetesApiError(KillKrillError):
    """Raised when the Kubernetes API answers a request with an error: ``status`` is the
    HTTP status (404 not found, 409 conflict, 422 invalid...), ``reason`` the API's own
    word (``NotFound``, ``Invalid``...) and the message the API's."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}: {message}")


class DevServiceError(KillKrillError):
    """Raised when the local service manager cannot install or start a service."""
