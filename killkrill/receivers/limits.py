"""The record limits every receiver applies, derived from the ``limits`` settings."""

from __future__ import annotations

from killkrill.config import RecordLimitSettings
from killkrill.schemas import RecordLimits

__all__ = ["record_limits"]


def record_limits(settings: RecordLimitSettings) -> RecordLimits:
    """The :class:`RecordLimits` of ``settings``: one field for each setting, same name (a
    setting without its limit, or the reverse, fails here rather than being ignored)."""
    return RecordLimits(**settings.model_dump())
