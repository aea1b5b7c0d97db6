"""Fixtures for tests against a real Kubernetes API server: the local control plane that
``killkrill dev k8s up --all`` runs (built once into the cache; ``make k8s`` does it), or
the cluster ``KUBECONFIG`` names when it is set (nothing is started then).

``tests/integration/conftest.py`` re-exports these fixtures, so every integration test (the
operator's too) can ask for them:

* ``kube_env`` (session): the kubeconfig path, the directory of the built tools (kubectl,
  helm, kind, skaffold), and an environment for subprocesses with both;
* ``kubeconfig`` (session): the kubeconfig path alone;
* ``kube_api`` (session): a ``kubernetes`` client ``ApiClient`` for it;
* ``kube_namespace`` (per test): a namespace of this test alone (named after the run id),
  deleted at the end of the test. A run never touches namespaces it did not create.

No kubelet or scheduler runs in the local control plane: Pods stay Pending.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from run_names import RUN_ID

__all__ = ["KubeEnv", "kube_api", "kube_env", "kube_namespace", "kubeconfig", "run_kk"]

_UP_TIMEOUT = 3 * 3600  # a cold build of every tool on a busy 2-core machine
_namespaces = itertools.count(1)


@dataclass(frozen=True)
class KubeEnv:
    """Where the cluster and the tools are."""

    kubeconfig: str
    bin_dir: Path
    env: dict[str, str]
    """``os.environ`` with ``KUBECONFIG`` and ``PATH`` (the tools first)."""
    given: bool
    """True when ``KUBECONFIG`` came from the environment (not our control plane)."""

    def run(self, *argv: str, input: str | None = None, timeout: float = 60) -> Any:
        """Run a tool (``kubectl``, ``helm``...) from the bin dir against the cluster."""
        done = subprocess.run(
            [str(self.bin_dir / argv[0]), *argv[1:]],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done

    def kubectl(self, *args: str, input: str | None = None) -> Any:
        return self.run("kubectl", *args, input=input)


def run_kk(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``killkrill dev k8s ARGS`` in a subprocess; its output is echoed for the report."""
    done = subprocess.run(
        [sys.executable, "-m", "killkrill", "dev", "k8s", *args],
        env=env if env is not None else dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done


@pytest.fixture(scope="session")
def kube_env() -> KubeEnv:
    """The cluster, up: ``killkrill dev k8s up --all`` (a no-op when it runs already)."""
    up = run_kk("up", "--all", timeout=_UP_TIMEOUT)
    if up.returncode != 0:
        pytest.exit(
            "`killkrill dev k8s up --all` failed; run `make k8s` to see why:\n" + up.stderr[-3000:],
            returncode=3,
        )
    exports: dict[str, str] = {}
    lines = run_kk("env").stdout.splitlines()
    shell = subprocess.run(
        ["bash", "-c", "\n".join([*lines, 'printf "%s\\n%s" "$KUBECONFIG" "$PATH"'])],
        capture_output=True,
        text=True,
        check=True,
    )
    exports["KUBECONFIG"], exports["PATH"] = shell.stdout.split("\n", 1)
    bin_dir = Path(exports["PATH"].split(":", 1)[0])
    env = {**os.environ, **exports}
    return KubeEnv(exports["KUBECONFIG"], bin_dir, env, bool(os.environ.get("KUBECONFIG")))


@pytest.fixture(scope="session")
def kubeconfig(kube_env: KubeEnv) -> str:
    return kube_env.kubeconfig


@pytest.fixture(scope="session")
def kube_api(kube_env: KubeEnv) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the cluster."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=kube_env.kubeconfig)
    yield client
    client.close()


@pytest.fixture
def kube_namespace(kube_api: Any) -> Iterator[str]:
    """A namespace of this test's own (``kk-test-<run>-<n>``), deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(kube_api)
    name = f"kk-test-{RUN_ID}-{next(_namespaces)}"
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"killkrill.io/test-run": RUN_ID})
        )
    )
    yield name
    try:
        core.delete_namespace(name, propagation_policy="Background")
    except client.ApiException as exc:
        if exc.status != 404:  # a test may have deleted it already
            raise
