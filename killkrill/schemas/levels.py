"""Log levels: six canonical names, many accepted spellings.

Canonical levels, lowest to highest: ``trace``, ``debug``, ``info``, ``warn``, ``error``,
``fatal``. Input is matched case-insensitively after trimming; common aliases from syslog,
Java (``SEVERE``, ``FINE``), Python (``WARNING``, ``CRITICAL``) and Go/zap (``dpanic``) are
accepted. Integers follow bunyan/pino: 10 trace, 20 debug, 30 info, 40 warn, 50 error,
60 fatal.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = ["LEVELS", "Level", "normalise_level"]

Level = Literal["trace", "debug", "info", "warn", "error", "fatal"]
LEVELS: Final[tuple[str, ...]] = get_args(Level)

_ALIASES: Final[dict[str, str]] = {
    **{name: name for name in LEVELS},
    "trc": "trace", "finest": "trace", "finer": "trace", "verbose": "trace", "all": "trace",
    "dbg": "debug", "fine": "debug", "config": "debug", "d": "debug",
    "inf": "info", "information": "info", "informational": "info", "notice": "info",
    "i": "info", "log": "info", "default": "info",
    "warning": "warn", "wrn": "warn", "w": "warn",
    "err": "error", "eror": "error", "severe": "error", "e": "error",
    "crit": "fatal", "critical": "fatal", "alert": "fatal", "emerg": "fatal",
    "emergency": "fatal", "panic": "fatal", "dpanic": "fatal", "ftl": "fatal", "f": "fatal",
}  # fmt: skip

_NUMBERS: Final[dict[int, str]] = {
    10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal",
}  # fmt: skip

_HINT = (
    "use one of trace, debug, info, warn, error, fatal "
    "(aliases such as WARNING, err, critical are accepted)"
)


def normalise_level(value: object) -> str:
    """Return the canonical level for ``value``; raise ``ValueError`` naming what to send."""
    if isinstance(value, str):
        level = _ALIASES.get(value) or _ALIASES.get(value.strip().lower())
        if level is not None:
            return level
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(f"'{shown}' is not a known level; {_HINT}")
    if isinstance(value, int) and not isinstance(value, bool):
        level = _NUMBERS.get(value)
        if level is not None:
            return level
        raise ValueError(f"{value} is not a known numeric level (10..60 by tens); {_HINT}")
    kind = "null" if value is None else type(value).__name__
    raise ValueError(f"must be a string, not {kind}; {_HINT}")
