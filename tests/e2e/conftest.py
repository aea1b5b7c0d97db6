"""End-to-end tests: KillKrill in a real kind cluster (``make e2e``; never part of
``make test``). Every test here is marked ``e2e``. The fixtures are in ``kind_cluster.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kind_cluster import kind_env, kind_image, kind_namespace
from kind_stack import kind_services

__all__ = ["kind_env", "kind_image", "kind_namespace", "kind_services"]

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item: a fixture's teardown shows the cluster's state
    when the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
