"""`killkrill dev k8s` itself: env for shells, a given KUBECONFIG, a second control plane that
comes up, stays up and goes away leaving nothing, and one-line errors.

The second control plane runs in a home and on ports of its own; the one the other tests use
is never stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_cluster import KubeEnv, run_kk

from killkrill.dev.k8s.cluster import Ports
from killkrill.dev.process import port_open


def _free_offset() -> int:
    for offset in range(20000 - 2379, 30000 - 2379, 97):
        ports = Ports.from_offset(offset)
        if not any(port_open(p) for p in vars(ports).values()):
            return offset
    pytest.fail("no free ports for a second control plane")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(extra)
    return env


@pytest.fixture
def other_home() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="kk-k8s-test-", dir="/tmp"))
    top.chmod(0o755)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def _processes_of(home: Path) -> str:
    found = subprocess.run(["pgrep", "-af", str(home)], capture_output=True, text=True)
    return found.stdout


def test_env_evaluates_in_bash_and_puts_the_tools_first(kube_env: KubeEnv) -> None:
    script = 'eval "$(killkrill dev k8s env)"; echo "$KUBECONFIG"; command -v kubectl helm kind'
    bin_on_path = str(Path(sys.executable).parent)  # the killkrill command
    done = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "PATH": f"{bin_on_path}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    kubeconfig, *tools = done.stdout.splitlines()
    assert kubeconfig == kube_env.kubeconfig
    assert tools == [str(kube_env.bin_dir / t) for t in ("kubectl", "helm", "kind")]


def test_a_given_kubeconfig_is_used_and_nothing_is_started(
    kube_env: KubeEnv, other_home: Path
) -> None:
    env = _env(
        KUBECONFIG=kube_env.kubeconfig,
        KILLKRILL_DEV_HOME=str(other_home / "home"),
        KILLKRILL_DEV_PORT_OFFSET=str(_free_offset()),
    )
    up = run_kk("up", env=env)
    assert up.returncode == 0, up.stderr
    assert f"using KUBECONFIG={kube_env.kubeconfig}" in up.stderr
    assert "nothing started" in up.stderr
    assert "started at" not in up.stderr
    assert not list((other_home / "home").glob("k8s/*.pid"))
    assert _processes_of(other_home) == ""
    status = run_kk("status", env=env)
    assert status.returncode == 0 and "given" in status.stdout
    exports = run_kk("env", env=env).stdout
    assert f"export KUBECONFIG={kube_env.kubeconfig}\n" in exports
    down = run_kk("down", env=env)
    assert down.returncode == 0 and "left alone" in down.stderr


def test_an_unreachable_given_kubeconfig_is_one_clear_error(
    kube_env: KubeEnv, other_home: Path
) -> None:
    dead = other_home / "dead.kubeconfig"
    text = Path(kube_env.kubeconfig).read_text()
    server = next(line.split()[-1] for line in text.splitlines() if "server:" in line)
    dead.write_text(text.replace(server, "https://127.0.0.1:1"))
    up = run_kk("up", env=_env(KUBECONFIG=str(dead)))
    assert up.returncode == 1
    assert f"the cluster of KUBECONFIG={dead} (given in the environment) is not reachable" in (
        up.stderr
    )
    assert "unset KUBECONFIG" in up.stderr
    assert "Traceback" not in up.stderr


def test_a_second_control_plane_comes_up_once_and_goes_away_leaving_nothing(
    kube_env: KubeEnv, other_home: Path
) -> None:
    home = other_home / "home"
    offset = _free_offset()
    ports = Ports.from_offset(offset)
    env = _env(KILLKRILL_DEV_HOME=str(home), KILLKRILL_DEV_PORT_OFFSET=str(offset))
    try:
        started = time.monotonic()
        up = run_kk("up", env=env)
        assert up.returncode == 0, up.stderr
        for name in ("etcd", "kube-apiserver", "kube-controller-manager"):
            assert f"{name}: started at" in up.stderr
        assert "nothing to build" in up.stderr
        print(f"second control plane up in {time.monotonic() - started:.1f}s")
        pids = sorted(int(p.read_text()) for p in home.glob("k8s/*.pid"))
        assert len(pids) == 3

        again = run_kk("up", env=env)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr and "started" not in again.stderr
        assert sorted(int(p.read_text()) for p in home.glob("k8s/*.pid")) == pids

        status = run_kk("status", env=env)
        assert status.returncode == 0, status.stdout
        assert status.stdout.count(" running ") == 3
        assert f"https://127.0.0.1:{ports.apiserver}" in status.stdout

        kubeconfig = home / "k8s" / "kubeconfig"
        nodes = subprocess.run(
            [str(kube_env.bin_dir / "kubectl"), "get", "--raw", "/readyz"],
            env={**env, "KUBECONFIG": str(kubeconfig)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert (nodes.returncode, nodes.stdout) == (0, "ok"), nodes.stderr
        assert _processes_of(home).count("\n") == 3
    finally:
        down = run_kk("down", env=env)
    assert down.returncode == 0, down.stderr
    assert down.stderr.count(": stopped") == 3
    assert _processes_of(home) == "", "processes left behind"
    assert not any(port_open(p) for p in vars(ports).values())
    stopped = run_kk("status", env=env)
    assert stopped.returncode == 1 and stopped.stdout.count(" stopped ") == 3


def test_build_failures_are_one_message_without_a_traceback(other_home: Path) -> None:
    unknown = run_kk("build", "kube-nothing")
    assert unknown.returncode == 1
    assert "unknown binary kube-nothing; known: etcd, kube-apiserver" in unknown.stderr
    # An empty cache: kind must be built, and the Go command named cannot be run.
    env = _env(KILLKRILL_DEV_CACHE=str(other_home / "cache"), KILLKRILL_DEV_GO="/nonexistent/go")
    no_go = run_kk("build", "kind", env=env)
    assert no_go.returncode == 1
    assert "KILLKRILL_DEV_GO=/nonexistent/go is not an executable" in no_go.stderr
    # The Go module proxy refusing (offline): the go command's own words, and nothing built.
    offline = _env(
        KILLKRILL_DEV_CACHE=str(other_home / "cache"),
        GOPROXY="off",
        GOMODCACHE=str(other_home / "gomod"),
    )
    failed = run_kk("build", "kind", env=offline)
    assert failed.returncode == 1
    assert "GOPROXY=off" in failed.stderr
    assert "Traceback" not in no_go.stderr + failed.stderr + unknown.stderr
    assert not list((other_home / "cache").glob("k8s/*/bin/kind"))
