"""The suite's leak guard (``tests/leak_guard.py``): the search itself, and a whole pytest run
in which child processes log a password, which must fail naming the test and the line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from leak_guard import LeakGuard

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def test_findings_name_the_line_and_mask_the_secret() -> None:
    guard = LeakGuard()
    secret = guard.secret("Redis password")
    text = f"started\nconnecting to redis://u:{secret}@h:1/0\nok"
    [finding] = guard.findings(text, "worker.log")
    assert (finding.where, finding.line, finding.label) == ("worker.log", 2, "Redis password")
    assert secret not in str(finding)
    assert "redis://u:<secret: Redis password>@h:1/0" in str(finding)
    assert guard.findings("redis://u:***@h:1/0", "worker.log") == []
    assert guard.mask(text).count("<secret: Redis password>") == 1


def test_basic_auth_headers_and_short_values() -> None:
    guard = LeakGuard()
    guard.register_basic_auth("writer", "a-long-password-1", "ES password")
    assert guard.findings("Authorization: Basic d3JpdGVyOmEtbG9uZy1wYXNzd29yZC0x", "x")
    with pytest.raises(ValueError, match="12\\+ characters"):
        guard.register("short", "too short")


def test_file_scan_skips_files_that_hold_a_secret_on_purpose(tmp_path: Path) -> None:
    guard = LeakGuard()
    secret = guard.secret("PG password")
    guard.secret_file(tmp_path / "password", secret)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "worker.log").write_text(f"a\nb\nDSN postgresql://u:{secret}@db/x\n")
    (tmp_path / "current").symlink_to(tmp_path / "sub")  # like pytest's *current links
    found = guard.scan_files(tmp_path)
    assert [(f.where, f.line) for f in found] == [(f"{tmp_path.name}/sub/worker.log", 3)]


_INNER = """
    import subprocess, sys

    import pytest

    CHILD = (
        "import logging, sys; logging.basicConfig(stream=sys.stdout, level=logging.INFO); "
        "logging.getLogger('worker').info('connecting to %s', sys.argv[1])"
    )

    def _url(leak_guard):
        return f"redis://kk:{leak_guard.secret('Redis password')}@127.0.0.1:6379/1"

    def test_child_logs_its_url_into_a_file(leak_guard, tmp_path):
        with (tmp_path / "worker.log").open("wb") as out:
            subprocess.run([sys.executable, "-c", CHILD, _url(leak_guard)], stdout=out, check=True)

    def test_child_prints_its_url_to_the_captured_stdout(leak_guard):
        subprocess.run([sys.executable, "-c", CHILD, _url(leak_guard)], check=True)

    @pytest.fixture(scope="session")
    def shared_worker(leak_guard, tmp_path_factory):
        log = tmp_path_factory.mktemp("shared") / "worker.log"
        with log.open("wb") as out:
            subprocess.run([sys.executable, "-c", CHILD, _url(leak_guard)], stdout=out, check=True)

    def test_a_session_fixtures_child_logs_its_url(shared_worker):
        pass

    def test_child_logs_the_redacted_url(leak_guard, tmp_path):
        from killkrill.config import redact_url
        with (tmp_path / "worker.log").open("wb") as out:
            subprocess.run(
                [sys.executable, "-c", CHILD, redact_url(_url(leak_guard))], stdout=out, check=True
            )
"""


def test_a_run_whose_child_process_logs_a_password_fails_naming_test_and_line(
    tmp_path: Path,
) -> None:
    """A real pytest run with the guard: two tests whose child process logs its URL
    unredacted fail (one through the captured stdout, one through a log file in its
    tmp_path: its teardown fails), a session fixture's child logging it into a file of its
    own fails the run at the end, the one that logs it redacted passes, and the secret is
    never printed."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(_INNER))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)])}
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "leak_guard", "-p", "no:cacheprovider",
            "-p", "no:randomly", "-q", "-rf", "--basetemp", str(tmp_path / "basetemp"),
            "-o", "addopts=", str(tmp_path / "test_inner.py"),
        ],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "1 failed, 3 passed, 1 error" in output, output
    assert "ERROR at teardown of test_child_logs_its_url_into_a_file" in output, output
    assert (
        "test_inner.py::test_child_logs_its_url_into_a_file:\n"
        "  test_child_logs_its_url_into_a0/worker.log:1: holds the Redis password: "
        "INFO:worker:connecting to redis://kk:<secret: Redis password>@127.0.0.1:6379/1"
    ) in output, output
    assert (
        "test_inner.py::test_child_prints_its_url_to_the_captured_stdout [Captured stdout "
        "call]:1: holds the Redis password"
    ) in output, output
    assert "secrets leaked into files under basetemp" in output, output
    assert "basetemp/shared0/worker.log:1: holds the Redis password" in output, output
    assert re.search(r"kk[0-9a-f]{32}", output) is None, output  # masked everywhere
