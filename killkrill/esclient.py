"""The Elasticsearch client of every KillKrill process, from :class:`ElasticsearchSettings`.

The URL (a secret), an API key or basic-auth password read from its file at start (never
logged), the CA file, and TLS verification, on unless ``verify_certs`` is false (then a
warning). The log worker's sink and the health probes both use it.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import OrjsonSerializer

from killkrill.config.common import ElasticsearchSettings
from killkrill.config.secrets import read_secret_file, redact_url, url_has_credentials
from killkrill.errors import ConfigError

__all__ = ["credentials_source", "elasticsearch_client"]

log = logging.getLogger("killkrill.elasticsearch")


def elasticsearch_client(settings: ElasticsearchSettings) -> AsyncElasticsearch:
    """An async client for the sink: no client-side retries (the worker's retry policy
    decides, and counts attempts), orjson for the answers; credentials, CA file and TLS
    verification from ``settings``.

    The API key or password is read from its file here, once (a missing or empty file
    raises :class:`ConfigError` naming the setting). ``verify_certs: false`` and
    credentials sent over plain http to another host are logged as warnings.
    """
    auth: dict[str, Any] = {}
    if settings.api_key_file is not None:
        key = read_secret_file(settings.api_key_file, "elasticsearch.api_key_file")
        value = key.get_secret_value()
        # The `encoded` form is base64 (no ':'); `id:api_key` is the key's two parts.
        auth["api_key"] = tuple(value.split(":", 1)) if ":" in value else value
    if settings.username is not None and settings.password_file is not None:
        password = read_secret_file(settings.password_file, "elasticsearch.password_file")
        auth["basic_auth"] = (settings.username, password.get_secret_value())
    tls: dict[str, Any] = {"verify_certs": settings.verify_certs}
    if settings.ca_file is not None:
        if not settings.ca_file.is_file():
            raise ConfigError(
                f"elasticsearch.ca_file: {settings.ca_file} is not a file (mount the CA "
                "certificate there, or fix the path)"
            )
        tls["ca_certs"] = str(settings.ca_file)
    where = redact_url(settings.url)
    if not settings.verify_certs:
        tls["ssl_show_warn"] = False  # this warning instead of the library's, once
        log.warning(
            "elasticsearch.verify_certs is false: the TLS certificate of Elasticsearch is not "
            "verified, so anyone between the worker and the cluster can read the logs and "
            "the credentials, or pose as the cluster. Set elasticsearch.ca_file to the CA "
            "that signed it and turn verification back on",
            extra={"elasticsearch": where},
        )
    if (auth or url_has_credentials(settings.url)) and _plain_http_elsewhere(where):
        log.warning(
            "Elasticsearch credentials are sent over plain http to another host: anyone on "
            "the path can read them. Use an https:// URL",
            extra={"elasticsearch": where},
        )
    return AsyncElasticsearch(
        settings.url.get_secret_value(),
        request_timeout=settings.request_timeout,
        max_retries=0,
        retry_on_timeout=False,
        serializer=OrjsonSerializer(),
        **auth,
        **tls,
    )


def credentials_source(settings: ElasticsearchSettings) -> str | None:
    """What the client authenticates with, in words for messages (no secret); None when
    it sends no credentials."""
    if settings.api_key_file is not None:
        return f"the API key in {settings.api_key_file}"
    if settings.username is not None:
        return f"user {settings.username!r} with the password in {settings.password_file}"
    if url_has_credentials(settings.url):
        return "the credentials in elasticsearch.url"
    return None


def _plain_http_elsewhere(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True
