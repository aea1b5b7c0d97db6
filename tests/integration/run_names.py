"""The names this test run owns on the shared services (see ``conftest.py``'s docstring).

A plain module (``tests/integration`` is put on ``sys.path`` by ``conftest.py``), imported
once, so every fixture and helper sees the same run id.
"""

from __future__ import annotations

import os
import uuid

__all__ = ["ES_INDEX_PREFIX", "PG_SCHEMA", "RUN_ID"]

RUN_ID = os.environ.get("KILLKRILL_TEST_RUN") or uuid.uuid4().hex[:10]
"""This run's id (``KILLKRILL_TEST_RUN``, or random): part of every name the run owns."""
ES_INDEX_PREFIX = f"logs-test-{RUN_ID}"
"""Index prefix of every log worker the tests start (the seed's ``logs-test``, per run)."""
PG_SCHEMA = f"kk_test_{RUN_ID}"
"""The PostgreSQL schema of this run's tables."""
