"""Credentials in settings: the redacted form of a URL, and secrets read from files.

Every URL that may hold a password (``redis.url``, ``elasticsearch.url``, ``database.url``)
is a :class:`~pydantic.SecretStr`: its ``repr``/``str`` is ``**********``, and only the code
that opens a client calls ``get_secret_value()``. Where a process says where it connects
(start-up lines, errors, ``/readyz``), it shows :func:`redact_url`: ``redis://user:***@host``.

Secrets mounted as files (a Kubernetes Secret, e.g. ``elasticsearch.password_file``) are
read once at start by :func:`read_secret_file`; the value is never logged.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

from killkrill.errors import ConfigError

__all__ = [
    "REDACTED",
    "read_secret_file",
    "redact_url",
    "url_has_credentials",
    "url_has_password",
    "url_with_password",
]

REDACTED = "***"
"""What stands in for a password in a redacted URL."""

_SECRET_QUERY = re.compile(
    r"(?i)(^|[&;])((?:ssl)?pass(?:word|wd)?|pwd|secret|token|access_token|api_?key|auth)=[^&;]*"
)
"""Query parameters holding a credential (libpq ``password=``, redis-py ``password=``...)."""


def redact_url(url: str | SecretStr) -> str:
    """``url`` without its credentials: the password of the user part and the values of
    password-like query parameters become ``***`` (``redis://:***@host:6379/0``,
    ``postgresql://user:***@db/x?password=***``). The user name, host, port and path stay,
    so the line still says where. A URL that cannot be parsed is not shown at all."""
    raw = url.get_secret_value() if isinstance(url, SecretStr) else url
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "<URL not shown: it could not be parsed>"
    shown = raw  # edited in place, so the rest stays exactly as written
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if has_password else f"{user}@{host}"
        shown = shown.replace(parts.netloc, netloc, 1)
    if parts.query:
        query = _SECRET_QUERY.sub(lambda m: f"{m[1]}{m[2]}={REDACTED}", parts.query)
        shown = shown.replace(f"?{parts.query}", f"?{query}", 1)
    return shown


def url_has_credentials(url: SecretStr) -> bool:
    """Whether ``url`` carries a user part (``scheme://user[:password]@host``)."""
    try:
        return "@" in urlsplit(url.get_secret_value()).netloc
    except ValueError:
        return False


def url_has_password(url: SecretStr) -> bool:
    """Whether ``url`` carries a password (``scheme://user:password@host``) or a
    password-like query parameter (``?password=...``)."""
    raw = url.get_secret_value()
    try:
        parts = urlsplit(raw)
    except ValueError:
        return False
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    return ":" in userinfo or bool(_SECRET_QUERY.search(parts.query))


def url_with_password(url: SecretStr, password: SecretStr) -> SecretStr:
    """``url`` logging in with ``password`` (percent-encoded; the URL's user name kept, none
    for Redis's default user): ``redis://:pw@host/0``, ``postgresql://user:pw@host/db``."""
    raw = url.get_secret_value()
    parts = urlsplit(raw)
    user = parts.netloc.rpartition("@")[0].partition(":")[0] if "@" in parts.netloc else ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(password.get_secret_value(), safe='')}@{host}"
    return SecretStr(parts._replace(netloc=netloc).geturl())


def read_secret_file(path: Path, setting: str) -> SecretStr:
    """The secret held by the file at ``path`` (surrounding whitespace and the trailing
    newline of a mounted Secret removed). Raises :class:`ConfigError` naming ``setting``
    when the file cannot be read or is empty; the message never holds the content."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{setting}: cannot read {path}: {exc.strerror or exc} (mount the Secret there, "
            "or fix the path)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{setting}: {path} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"{setting}: {path} is empty")
    return SecretStr(value)
