"""Seed-compatible alias: ``from shared.models import AggregatedMetric, create_engine``."""

from killkrill.db import *  # noqa: F403
from killkrill.db import __all__ as __all__
