"""The retry schedule of the workers: :class:`~killkrill.config.backoff.Backoff` (it lives
with the settings, which bound the time a batch may take with it)."""

from killkrill.config.backoff import Backoff

__all__ = ["Backoff"]
