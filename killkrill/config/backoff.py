"""The retry *schedule*: exponential backoff with jitter and a cap (pure).

Whether to retry at all is the sink's decision (per item: Delivered / Retry / Reject, see
:mod:`killkrill.workers.base`); this module only says how long to wait before the next try.
It sits with the settings (:class:`~killkrill.config.RetrySettings` builds one) because the
settings check bounds of their own with it: the longest a batch may take
(:func:`killkrill.config.workers.pending_bound_seconds`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (1-based): ``min(cap, base * factor**(n-1))``, jittered.

    With ``jitter`` j, the delay is drawn uniformly from ``[(1-j)*d, d]``, so retries from
    many workers spread out instead of arriving together. Any ``n`` is fine (an outage of
    days counts millions of attempts): the exponent stops growing once the cap is reached.
    """

    base: float = 0.2
    """Seconds before the first retry."""
    factor: float = 2.0
    cap: float = 10.0
    """Seconds: no delay is longer."""
    jitter: float = 0.5
    """Fraction of the delay that is randomised, 0..1."""

    def delay(self, attempt: int) -> float:
        return self.ceiling(attempt) * (1.0 - self.jitter * random.random())

    def ceiling(self, attempt: int) -> float:
        """The delay before retry ``attempt`` without jitter (its largest possible value)."""
        if self.base <= 0 or self.cap <= 0:
            return 0.0
        if self.factor <= 1 or self.base >= self.cap:
            return min(self.cap, self.base)
        return min(self.cap, self.base * self.factor ** min(max(0, attempt - 1), self._steps()))

    def _steps(self) -> int:
        """Retries after the first at which the cap is reached (``factor**steps >= cap/base``):
        the exponent never grows past it, so it never overflows, whatever the attempt."""
        if self.factor <= 1 or self.base <= 0 or self.base >= self.cap:
            return 0
        return math.ceil(math.log(self.cap / self.base, self.factor))

    def total(self, retries: int) -> float:
        """Longest time the waits before retries 1..``retries`` can add up to, in seconds."""
        growing = min(max(0, retries), self._steps() + 1)
        return sum(self.ceiling(n) for n in range(1, growing + 1)) + self.ceiling(retries) * max(
            0, retries - growing
        )
