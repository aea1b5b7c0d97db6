"""Suite-wide rules.

* With KILLKRILL_FORBID_SKIPS=1 (set by .ci/run) a skipped test fails the run. Tests skip
  only when a real peer (logger, rsyslog, prometheus, openssl, nginx) or a manageable
  service is missing on a developer's machine; CI installs all of them, so a skip there
  means something was not tested.
* No secret of the run (the services' test passwords, made per run) may appear in a
  captured output or log section of any test, or in a file under pytest's basetemp: see
  ``leak_guard.py``, loaded here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # leak_guard, shared by both test trees

import leak_guard


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("leak_guard"):
        config.pluginmanager.register(leak_guard, "leak_guard")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("KILLKRILL_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == 0:
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            print(f"\nskipped in CI: {report.nodeid}: {reason}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
