"""The retry *schedule*: exponential backoff with jitter and a cap.

Whether to retry at all is the sink's decision (per item: Delivered / Retry / Reject, see
:mod:`killkrill.workers.base`); this module only says how long to wait before the next try.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Delay before retry ``n`` (1-based): ``min(cap, base * factor**(n-1))``, jittered.

    With ``jitter`` j, the delay is drawn uniformly from ``[(1-j)*d, d]``, so retries from
    many workers spread out instead of arriving together.
    """

    base: float = 0.2
    """Seconds before the first retry."""
    factor: float = 2.0
    cap: float = 10.0
    """Seconds: no delay is longer."""
    jitter: float = 0.5
    """Fraction of the delay that is randomised, 0..1."""

    def delay(self, attempt: int) -> float:
        raw: float = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return raw * (1.0 - self.jitter * random.random())
