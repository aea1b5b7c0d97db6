"""API-key authentication of ingest requests.

Keys are held only as SHA-256 digests. A presented key is hashed and compared with every
stored digest using :func:`hmac.compare_digest` (no early exit), so the time taken says
nothing about how close a guess was. 401: no key or an unknown key; 403: a known key whose
scopes do not include the endpoint.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping

from killkrill.config import ApiKey, AuthSettings
from killkrill.receivers.errors import RequestError

__all__ = ["ANONYMOUS", "Authenticator"]

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
"""The client name used when authentication is turned off."""


class Authenticator:
    """Checks the ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` header of a request."""

    def __init__(self, settings: AuthSettings) -> None:
        self.enabled = settings.enabled
        keys: list[ApiKey] = settings.all_keys() if settings.enabled else []
        self._keys: list[tuple[bytes, str, frozenset[str]]] = [
            (bytes.fromhex(k.sha256 or ""), k.name, frozenset(k.scopes)) for k in keys
        ]
        if not self.enabled:
            log.warning(
                "authentication is OFF: anyone who can reach this receiver can write to the "
                "pipeline; set auth.enabled=true (KILLKRILL_AUTH__ENABLED) outside local runs"
            )
        elif not self._keys:
            log.warning(
                "authentication is on but no API keys are configured: every request gets 401"
            )

    def check(self, headers: Mapping[str, str], scope: str) -> str:
        """Return the client's name, or raise :class:`RequestError` (401/403)."""
        if not self.enabled:
            return ANONYMOUS
        presented = _presented_key(headers)
        if presented is None:
            raise RequestError(
                401,
                "unauthenticated",
                "no API key; send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                field="Authorization",
                headers={"WWW-Authenticate": 'Bearer realm="killkrill"'},
            )
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        match: tuple[str, frozenset[str]] | None = None
        for stored, name, scopes in self._keys:
            if hmac.compare_digest(stored, digest) and match is None:
                match = (name, scopes)
        if match is None:
            raise RequestError(
                401,
                "invalid_api_key",
                "the API key is not known; check the key or ask for one",
                field="Authorization",
                headers={"WWW-Authenticate": 'Bearer realm="killkrill", error="invalid_token"'},
            )
        name, scopes = match
        if scope not in scopes:
            raise RequestError(
                403,
                "forbidden",
                f"the API key of '{name}' may not post to {scope}; it is allowed "
                f"{', '.join(sorted(scopes)) or 'nothing'}",
                field="Authorization",
            )
        return name


def _presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None
