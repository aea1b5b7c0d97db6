"""Structured logs: one JSON object per line on stdout."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "configure_json_logging"]

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "color_message",
}


_PLAIN = (str, int, float, bool, type(None), list, tuple, dict)
"""Types of the ``extra`` values written (anything else is a library's object)."""


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; exceptions under ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and isinstance(value, _PLAIN):
                out[key] = value  # objects a library attaches (kopf's settings) are left out
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_json_logging(level: str = "info") -> None:
    """Send every logger's records to stdout as JSON lines at ``level``."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Client libraries log every request at INFO; keep them for --log-level debug only.
    chatty = logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING
    # kopf says "handler succeeded" for every timer tick; the operator logs what it did.
    for name in ("elastic_transport", "alembic.runtime.migration", "httpx", "kopf.objects"):
        logging.getLogger(name).setLevel(chatty)
