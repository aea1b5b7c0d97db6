"""The project's Docker engine: its commands, privileged containers through the runc wrapper
(this sandbox withholds CAP_SYS_RESOURCE), and a ``down`` that leaves no process behind.

The dev engine (``make image`` starts it) is used as it is and never stopped here: other
runs may have containers on it. ``up``/``down`` are shown on a second engine of the test's
own (its own state and data dirs, in a network namespace of its own).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from killkrill.cli.main import cli
from killkrill.dev.base_image import BaseRecipe, build_base_images
from killkrill.dev.docker_engine import DockerEngine
from killkrill.dev.image import buildkit_client
from killkrill.dev.process import pid_alive

CAP_SYS_RESOURCE = 24
CAP_SYS_ADMIN = 21
BASE = BaseRecipe().runtime.moving


def _docker(
    engine: DockerEngine, *args: str, stdin: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    raw = subprocess.run(
        [engine.docker(), *args],
        input=stdin,
        capture_output=True,
        env=engine.client_env(),
        timeout=timeout,
        check=False,
    )
    done = subprocess.CompletedProcess(
        raw.args, raw.returncode, raw.stdout.decode(errors="replace"), raw.stderr.decode()
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done


def _killkrill(*args: str) -> Result:
    """``killkrill dev docker ARGS`` in-process; its output echoed for the leak guard."""
    result = CliRunner().invoke(cli, ["dev", "docker", *args])
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result


@pytest.fixture(scope="module")
def engine() -> DockerEngine:
    """The dev engine, running (``make image`` starts it; the tests fail, never skip)."""
    engine = DockerEngine()
    if not engine.running():
        pytest.fail("the project's Docker engine is not running: `make image` starts it")
    return engine


def _caps(status: str, field: str) -> int:
    for line in status.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {field} in {status!r}")


def test_commands_say_where_the_running_engine_is(engine: DockerEngine) -> None:
    status = _killkrill("status")
    assert status.exit_code == 0
    assert status.stdout.split()[:2] == ["docker", "running"]
    env = _killkrill("env")
    assert env.stdout == f"export DOCKER_HOST={engine.local_url()}\n"
    up = _killkrill("up")
    assert up.exit_code == 0
    assert "already running" in up.stderr


def test_privileged_containers_run_and_exec_without_cap_sys_resource(
    engine: DockerEngine,
) -> None:
    """``--privileged`` gets every capability the sandbox has (runc would fail with
    ``unable to apply caps`` on CAP_SYS_RESOURCE); ``docker exec`` goes through the
    wrapper's ``--process`` path."""
    name = f"kk-test-privileged-{uuid.uuid4().hex[:8]}"
    run = _docker(engine, "run", "-d", "--name", name, "--privileged", BASE, "sleep", "120")
    try:
        assert run.returncode == 0, run.stderr
        for argv in (["cat", "/proc/1/status"], ["cat", "/proc/self/status"]):
            done = _docker(engine, "exec", "--privileged", name, *argv)
            assert done.returncode == 0, done.stderr
            effective = _caps(done.stdout, "CapEff")
            assert effective & (1 << CAP_SYS_ADMIN)
            assert not effective & (1 << CAP_SYS_RESOURCE)
        mount = _docker(engine, "exec", name, "mount", "-t", "tmpfs", "none", "/mnt")
        assert mount.returncode == 0, mount.stderr  # what only a privileged container may do
    finally:
        _docker(engine, "rm", "-f", name)


@pytest.fixture
def second_engine() -> Iterator[DockerEngine]:
    """An engine of this test's own: state and data under a fresh directory (short, for the
    unix sockets), in its own network namespace (its docker0 and iptables rules are not the
    dev engine's); stopped and removed at the end."""
    top = Path(tempfile.mkdtemp(prefix="kk-de-", dir="/tmp"))
    top.chmod(0o755)  # the dev state dir must be reachable by other users (see state_dir)
    saved = {k: os.environ.get(k) for k in ("KILLKRILL_DEV_HOME", "KILLKRILL_DEV_CACHE")}
    os.environ["KILLKRILL_DEV_HOME"] = str(top / "s")
    os.environ["KILLKRILL_DEV_CACHE"] = str(top / "c")
    engine = DockerEngine(own_netns=True)
    try:
        yield engine
    finally:
        engine.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(top, ignore_errors=True)


def _symlinks_image() -> bytes:
    """A tar holding only Debian's merged-/usr links: with the host's /usr mounted read-only,
    a container runs the host's ``sleep`` (no registry, no debootstrap needed)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ("bin", "lib", "lib64", "sbin"):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, f"usr/{name}"
            tar.addfile(link)
        for name in ("proc", "sys", "dev", "etc", "tmp", "usr"):
            folder = tarfile.TarInfo(name)
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(folder)
    return out.getvalue()


def test_up_is_idempotent_and_down_leaves_no_process(second_engine: DockerEngine) -> None:
    engine = second_engine
    stopped = _killkrill("status")  # the CLI sees the test's engine (KILLKRILL_DEV_HOME)
    assert stopped.exit_code == 1
    assert stopped.stdout.split()[:2] == ["docker", "stopped"]
    assert "started" in engine.up()
    assert "already running" in engine.up()
    assert engine.config_file.is_file()
    assert engine.data_root.is_dir()

    image = f"kk-test/links:{uuid.uuid4().hex[:8]}"
    done = _docker(engine, "import", "-", image, stdin=_symlinks_image())
    assert done.returncode == 0, done.stderr
    run = _docker(
        engine, "run", "-d", "--network", "none", "--privileged", "-v", "/usr:/usr:ro",
        "--stop-timeout", "1", image, "sleep", "300",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    dockerd = engine.pid()
    assert dockerd is not None
    others = engine.leftovers()  # containerd and the container's shim, by their exec root
    assert len(others) >= 2, others

    started = time.monotonic()
    assert engine.down() == "docker: stopped"
    print(f"down took {time.monotonic() - started:.1f}s")
    assert [pid for pid in (dockerd, *others) if pid_alive(pid)] == []
    assert engine.leftovers() == []
    assert engine.status().state == "stopped"
    assert not engine.socket_path.exists()
    assert engine.down() == "docker: was not running"


def test_bases_of_an_unchanged_recipe_are_not_built_again(engine: DockerEngine) -> None:
    """``make image`` built them; another build of the same recipe only re-points the moving
    tags (seconds, not debootstrap's minutes)."""
    lines: list[str] = []
    started = time.monotonic()
    recipe = build_base_images(engine, echo=lines.append)
    assert lines[-1] == (f"base images up to date: {recipe.runtime.exact}, {recipe.build.exact}")
    assert time.monotonic() - started < 30
    for tags in (recipe.runtime, recipe.build):
        ids = {
            _docker(engine, "image", "inspect", "--format", "{{.Id}}", tag).stdout
            for tag in (tags.exact, tags.moving)
        }
        assert len(ids) == 1, ids


def test_a_buildkit_client_is_found(engine: DockerEngine) -> None:
    docker, env = buildkit_client(engine)
    assert env["DOCKER_BUILDKIT"] == "1"
    assert env["DOCKER_HOST"] == engine.local_url()
    done = subprocess.run(
        [docker, "build", "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert "--secret" in done.stdout
