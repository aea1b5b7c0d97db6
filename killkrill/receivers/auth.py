"""API-key authentication of ingest requests.

Keys are held only as SHA-256 digests. A presented key is hashed and compared with every
stored digest using :func:`hmac.compare_digest` (no early exit), so the time taken says
nothing about how close a guess was. 401: no key or an unknown key; 403: a known key whose
scopes do not include the endpoint, or whose streams do not include the stream.

Keys from ``auth.keys_file`` are re-read when the file changes (checked every
``auth.reload_interval`` seconds, see :meth:`Authenticator.watch`) or on SIGHUP
(:meth:`Authenticator.reload`), without a restart: a removed key is refused from then on.
A file that no longer reads keeps the keys in force and logs an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from killkrill.config import ApiKey, AuthSettings
from killkrill.config.receivers import undeclared_key_streams
from killkrill.errors import ConfigError
from killkrill.receivers.errors import RequestError

__all__ = ["ANONYMOUS", "Authenticator", "Client"]

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
"""The client name used when authentication is turned off."""


@dataclass(frozen=True, slots=True)
class Client:
    """Who sent a request (the key's name) and which streams it may write."""

    name: str
    streams: frozenset[str] | None = None
    """``None``: every declared stream."""

    def check_stream(self, stream: str) -> None:
        """Raise :class:`RequestError` (403) when this client may not write ``stream``."""
        if self.streams is not None and stream not in self.streams:
            raise RequestError(
                403,
                "forbidden_stream",
                f"the API key of '{self.name}' may not write stream '{stream}'; it may write "
                f"{', '.join(sorted(self.streams)) or 'no stream'}",
                field="stream",
            )


_ANONYMOUS_CLIENT = Client(ANONYMOUS)


@dataclass(frozen=True, slots=True)
class _Key:
    digest: bytes
    client: Client
    scopes: frozenset[str]


class Authenticator:
    """Checks the ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` header of a request."""

    def __init__(self, settings: AuthSettings, declared: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.enabled = settings.enabled
        self.declared = list(declared) if declared is not None else None
        self._keys: list[_Key] = []
        self._file_text: bytes | None = None
        if self.enabled:
            self._keys = self._load()
        if not self.enabled:
            log.warning(
                "authentication is OFF: anyone who can reach this receiver can write to the "
                "pipeline; set auth.enabled=true (KILLKRILL_AUTH__ENABLED) outside local runs"
            )
        elif not self._keys:
            log.warning(
                "authentication is on but no API keys are configured: every request gets 401"
            )

    def _load(self) -> list[_Key]:
        """Every key from the settings and the keys file; raises ConfigError."""
        if self.settings.keys_file is not None:
            self._file_text = _read(self.settings)
        keys = self.settings.all_keys()
        if self.declared is not None:
            problem = undeclared_key_streams(keys, self.declared)
            if problem:
                raise ConfigError(f"{self.settings.keys_file or 'auth.keys'}: {problem}")
        return [_key(k) for k in keys]

    def reload(self) -> bool:
        """Read the keys again; return whether they are now in force (a file that does not
        read keeps the previous keys, with an error logged)."""
        if not self.enabled:
            return False
        try:
            keys = self._load()
        except ConfigError as exc:
            log.error("API keys not reloaded; the previous ones stay in force: %s", exc)
            return False
        self._keys = keys
        log.info("API keys reloaded", extra={"keys": [k.client.name for k in keys]})
        return True

    async def watch(self) -> None:
        """Reload whenever ``auth.keys_file`` changes (checked every ``reload_interval``
        seconds); returns at once when there is nothing to watch. Cancel it to stop."""
        interval = self.settings.reload_interval
        if not self.enabled or self.settings.keys_file is None or interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            try:
                text = _read(self.settings)
            except ConfigError as exc:
                log.error("cannot check the API keys file: %s", exc)
                continue
            if text != self._file_text:
                self.reload()

    def check(self, headers: Mapping[str, str], scope: str) -> Client:
        """Return who sent the request, or raise :class:`RequestError` (401/403) when the
        key is missing, unknown, or not allowed ``scope`` (the endpoint). Which streams the
        client may write is checked next, once the stream is known
        (:meth:`Client.check_stream`)."""
        if not self.enabled:
            return _ANONYMOUS_CLIENT
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
        match: _Key | None = None
        for key in self._keys:
            if hmac.compare_digest(key.digest, digest) and match is None:
                match = key
        if match is None:
            raise RequestError(
                401,
                "invalid_api_key",
                "the API key is not known; check the key or ask for one",
                field="Authorization",
                headers={"WWW-Authenticate": 'Bearer realm="killkrill", error="invalid_token"'},
            )
        if scope not in match.scopes:
            raise RequestError(
                403,
                "forbidden",
                f"the API key of '{match.client.name}' may not post to {scope}; it is allowed "
                f"{', '.join(sorted(match.scopes)) or 'nothing'}",
                field="Authorization",
            )
        return match.client


def _key(key: ApiKey) -> _Key:
    streams = frozenset(key.streams) if key.streams is not None else None
    return _Key(bytes.fromhex(key.sha256 or ""), Client(key.name, streams), frozenset(key.scopes))


def _read(settings: AuthSettings) -> bytes:
    assert settings.keys_file is not None
    try:
        return settings.keys_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {settings.keys_file}: {exc.strerror}") from exc


def _presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None
