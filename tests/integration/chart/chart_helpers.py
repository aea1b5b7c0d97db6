"""Plain helpers of the chart's tests (fixtures are in conftest.py, which puts this folder on
``sys.path``): helm and kubectl through :class:`~kube_cluster.KubeEnv`, rendered documents,
and a lock for the one test that takes the shared Pipeline CRD into a release."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from killkrill_command import REPO
from kube_cluster import KubeEnv

CHART = REPO / "charts" / "killkrill"
CI_VALUES = sorted(CHART.glob("ci/*-values.yaml"))
"""The chart's ci values files (``helm lint --strict`` and the tests run each)."""
APP_VERSION = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])
PIPELINE_CRD = "pipelines.killkrill.io"


class Helm:
    """``helm`` against the test cluster, its config, cache and data in a directory of the
    run (the user's own helm settings are neither read nor written)."""

    def __init__(self, kube_env: KubeEnv, home: Path) -> None:
        self.kube_env = kube_env
        self.env = {
            **kube_env.env,
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.kube_env.bin_dir / "helm"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        print(f"$ helm {' '.join(args)}\n{done.stdout}{done.stderr}")
        return done

    def ok(self, *args: str, timeout: float = 120) -> str:
        """``helm ARGS``; its stdout, failing the test with its stderr unless it exits 0."""
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"helm {' '.join(args)}:\n{done.stderr}"
        return done.stdout

    def template(self, *args: str, release: str = "kk") -> list[dict[str, Any]]:
        """The documents ``helm template`` renders (empty ones dropped)."""
        return documents(self.ok("template", release, str(CHART), *args))


def release_args(release: str) -> list[str]:
    """The values every installing test gives (see conftest.py's doc): the CRD is the
    cluster's already, the peering object is the release's own."""
    return ["--set", "crds.install=false", "--set", f"operator.peering.name={release}"]


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def values_args(values_file: Path | None) -> list[str]:
    return ["-f", str(values_file)] if values_file is not None else []


def find(docs: Sequence[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name or ''}: {len(found)} rendered"
    return found[0]


def kinds(docs: Sequence[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


@contextlib.contextmanager
def cluster_lock(kube_env: KubeEnv, name: str, timeout: float = 600) -> Iterator[None]:
    """An exclusive lock, per API server, among the processes of this machine (test runs of
    any worktree share the local control plane): held while a test changes something
    cluster-scoped that another run's test may change too. Released when the process dies."""
    server = yaml.safe_load(Path(kube_env.kubeconfig).read_text())["clusters"][0]["cluster"]
    key = hashlib.sha256(f"{server['server']}/{name}".encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"killkrill-test-lock-{key}"
    deadline = time.monotonic() + timeout
    with path.open("a") as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                assert time.monotonic() < deadline, f"{path} held for {timeout}s"
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
