"""`killkrill dev services` against real servers: idempotent up, clean down, given URLs used.

A second Redis and PostgreSQL are started here by the manager itself, in a temporary home
and on shifted ports, so the services the rest of the suite uses are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from killkrill.dev.process import pid_alive, port_open

HERE = Path(__file__).parent
ROOT = HERE.parents[2]
SERVICE_URL_VARS = ("REDIS_URL", "TEST_DATABASE_URL", "DATABASE_URL", "ELASTICSEARCH_URL")


def _free_offset() -> int:
    for offset in range(1100, 1400, 17):
        if not port_open(6379 + offset) and not port_open(5432 + offset):
            return offset
    pytest.fail("no free port pair for a second Redis/PostgreSQL")


@pytest.fixture
def manager_env() -> Iterator[dict[str, str]]:
    # Under /tmp, not pytest's tmp_path: the service user must be able to enter it.
    top = Path(tempfile.mkdtemp(prefix="kk-manager-test-", dir="/tmp"))
    top.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_URL_VARS}
    env.update(KILLKRILL_DEV_HOME=str(top / "home"), KILLKRILL_DEV_PORT_OFFSET=str(_free_offset()))
    yield env
    _kk(env, "down", "redis", "postgres", check=False)
    shutil.rmtree(top, ignore_errors=True)


def _kk(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "killkrill", "dev", "services", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _pids(home: Path) -> list[int]:
    found = []
    for pidfile in (home / "redis/redis.pid", home / "postgres/data/postmaster.pid"):
        if pidfile.exists():
            found.append(int(pidfile.read_text().split()[0]))
    return found


@pytest.mark.slow
def test_up_is_idempotent_given_urls_are_used_and_down_leaves_nothing(
    manager_env: dict[str, str],
) -> None:
    home = Path(manager_env["KILLKRILL_DEV_HOME"])
    offset = int(manager_env["KILLKRILL_DEV_PORT_OFFSET"])

    first = _kk(manager_env, "up", "redis", "postgres")
    assert "redis: started" in first.stderr and "postgres: started" in first.stderr
    pids = _pids(home)
    assert len(pids) == 2 and all(pid_alive(p) for p in pids)

    second = _kk(manager_env, "up", "redis", "postgres")
    assert "redis: already running" in second.stderr
    assert "postgres: already running" in second.stderr
    assert "started" not in second.stderr
    assert _pids(home) == pids

    status = _kk(manager_env, "status", "redis", "postgres")
    assert status.stdout.count("running") == 2

    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in _kk(manager_env, "env", "redis", "postgres").stdout.splitlines()
    )
    assert exports["REDIS_URL"] == f"redis://127.0.0.1:{6379 + offset}/1"

    # The seed's fixtures honour the URLs they are given: a child pytest pointed at the
    # servers started above talks to them (the probe checks each server's own port).
    given = {
        **manager_env,
        "REDIS_URL": exports["REDIS_URL"],
        "TEST_DATABASE_URL": exports["TEST_DATABASE_URL"],
        "EXPECT_REDIS_PORT": str(6379 + offset),
        "EXPECT_PG_PORT": str(5432 + offset),
    }
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            str(HERE / "fixture_probe.py"),
        ],
        env=given,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert "2 passed" in probe.stdout

    # With the URL given, `up` starts nothing and uses it.
    other_home = {**given, "KILLKRILL_DEV_HOME": str(home.parent / "other")}
    using = _kk(other_home, "up", "redis")
    assert f"redis: using {exports['REDIS_URL']}" in using.stderr
    assert not (home.parent / "other/redis/redis.pid").exists()

    _kk(manager_env, "down", "redis", "postgres")
    assert not any(pid_alive(p) for p in pids)
    assert not port_open(6379 + offset) and not port_open(5432 + offset)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(home)], capture_output=True, text=True, check=False
    )
    assert leftovers.stdout == "", f"processes left behind: {leftovers.stdout}"
    assert _kk(manager_env, "status", "redis", "postgres", check=False).returncode == 1


def test_pytest_without_services_stops_with_one_clear_message(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "TEST_DATABASE_URL": "postgresql://test:test@127.0.0.1:1/killkrill_test",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(HERE / "fixture_probe.py"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out
    assert out.count("Redis is not reachable at redis://127.0.0.1:1/0") == 1, out
    assert "make services" in out
    assert "Traceback" not in out
