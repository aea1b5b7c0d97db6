"""Fixtures and helpers for end-to-end tests in a real kind cluster (pods run).

The cluster is the one ``killkrill dev kind up`` makes (``make e2e`` runs it first; the
session fixture runs it again, a no-op when it is up): one node from the node image built
here, on the project's Docker engine, its API server on 127.0.0.1. ``KILLKRILL_KIND_CLUSTER``
names another cluster. Everything a test reaches goes through 127.0.0.1: the API server, and
``kubectl port-forward`` (:meth:`KindEnv.port_forward`).

``tests/e2e/conftest.py`` re-exports these fixtures:

* ``kind_env`` (session): the cluster, up; a :class:`KindEnv` (kubeconfig, ``kubectl``,
  ``get``, ``apply``, ``wait``, ``load``, ``port_forward``, ``node_exec``);
* ``kind_image`` (session): :data:`APP_IMAGE` (``killkrill/killkrill:dev``, or
  ``$KILLKRILL_E2E_IMAGE``: ``make e2e`` builds ``killkrill/killkrill:e2e``) loaded into the
  node; pods use it with ``imagePullPolicy: Never``;
* ``kind_namespace`` (per test): a namespace of the test's own, ``kk-e2e-<run>-<n>``,
  deleted afterwards (what was in it is printed first when the test failed).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "APP_IMAGE",
    "RUN_ID",
    "KindEnv",
    "kind_env",
    "kind_image",
    "kind_namespace",
    "restricted_security_context",
    "run_kind",
]

RUN_ID = os.environ.get("KILLKRILL_TEST_RUN") or uuid.uuid4().hex[:10]
APP_IMAGE = os.environ.get("KILLKRILL_E2E_IMAGE") or "killkrill/killkrill:dev"
"""The KillKrill image the tests run: ``make image``'s, or (``make e2e``) one tagged for the
e2e run alone, so that another worktree's ``make image`` on the same engine (which moves
``:dev``) cannot swap it mid-run."""
_UP_TIMEOUT = 3 * 3600  # a cold build of every binary and the node image on 2 busy cores
_namespaces = itertools.count(1)
_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


def run_kind(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``killkrill dev kind ARGS`` in a subprocess; its output echoed for the report."""
    done = subprocess.run(
        [sys.executable, "-m", "killkrill", "dev", "kind", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done


def restricted_security_context() -> dict[str, Any]:
    """What the KillKrill image must run under: not root, nothing written, no privileges."""
    return {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@dataclass(frozen=True)
class KindEnv:
    """Where the kind cluster and its tools are."""

    name: str
    kubeconfig: str
    bin_dir: Path
    env: dict[str, str]
    """``os.environ`` with ``KUBECONFIG`` (the kind cluster's) and ``PATH`` (tools first)."""

    def run(
        self, *argv: str, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """A tool of the bin dir (``kubectl``, ``helm``...) against the cluster; echoed."""
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

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS``; with ``check`` a failure fails the test with its output."""
        done = self.run("kubectl", *args, input=input, timeout=timeout)
        if check and done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def get(self, *args: str) -> Any:
        """``kubectl get ARGS -o json``, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def apply(self, namespace: str, *objects: dict[str, Any]) -> None:
        """Server-side apply of ``objects`` into ``namespace``."""
        doc = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl(
            "apply", "-n", namespace, "--server-side", "--field-manager=kk-e2e", "-f", "-",
            input=json.dumps(doc),
        )  # fmt: skip

    def wait(self, namespace: str, what: str, condition: str, timeout: float = 180) -> None:
        """``kubectl wait --for=CONDITION WHAT``; on timeout the test fails with a
        description of ``what``."""
        done = self.kubectl(
            "wait", "-n", namespace, f"--for={condition}", what, f"--timeout={timeout:.0f}s",
            timeout=timeout + 30, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            described = self.kubectl("describe", "-n", namespace, what, check=False)
            pytest.fail(f"{what} never got {condition}: {done.stderr}\n{described.stdout}")

    def load(self, *images: str) -> None:
        """``kind load docker-image`` (through ``killkrill dev kind load``) into the node."""
        done = run_kind("load", "--name", self.name, *images)
        if done.returncode != 0:
            pytest.fail(f"loading {', '.join(images)} into kind failed: {done.stderr}")

    @contextmanager
    def port_forward(
        self, namespace: str, target: str, port: int, timeout: float = 60
    ) -> Iterator[int]:
        """``kubectl port-forward`` of ``target`` (``pod/x``, ``service/y``...) ``port`` to a
        free port of 127.0.0.1, which is yielded; stopped on exit."""
        proc = subprocess.Popen(
            [str(self.bin_dir / "kubectl"), "port-forward", "--address", "127.0.0.1",
             "-n", namespace, target, f":{port}"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout
            local = None
            while local is None and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                sys.stdout.write(line)
                match = _FORWARDING.search(line)
                if match:
                    local = int(match[1])
            if local is None:
                proc.kill()
                _, err = proc.communicate(timeout=10)
                pytest.fail(f"kubectl port-forward {target} :{port} did not start: {err}")
            yield local
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)

    @property
    def node(self) -> str:
        """The node's container (kind names it ``<cluster>-control-plane``)."""
        return f"{self.name}-control-plane"

    def node_exec(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the node's container (``crictl``, ``iptables``, ``journalctl``...)
        through the project's Docker engine; echoed."""
        from killkrill.dev.docker_engine import DockerEngine

        engine = DockerEngine()
        done = subprocess.run(
            [engine.docker(), "exec", self.node, *argv],
            env=engine.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        return done

    def describe_namespace(self, namespace: str) -> str:
        """Pods, events and logs of ``namespace``: what a failed test's report shows."""
        parts = []
        for args in (
            ("get", "all", "-o", "wide"),
            ("get", "events", "--sort-by=.lastTimestamp"),
            ("logs", "--all-containers", "--prefix", "--tail=50", "-l", "kk-e2e"),
        ):
            done = self.kubectl("-n", namespace, *args, check=False)
            parts.append(f"$ kubectl -n {namespace} {' '.join(args)}\n{done.stdout}{done.stderr}")
        return "\n".join(parts)


@pytest.fixture(scope="session")
def kind_env() -> KindEnv:
    """The kind cluster, up: ``killkrill dev kind up`` (a no-op when it runs already)."""
    name = os.environ.get("KILLKRILL_KIND_CLUSTER", "killkrill")
    up = run_kind("up", "--name", name, timeout=_UP_TIMEOUT)
    if up.returncode != 0:
        pytest.exit(
            "`killkrill dev kind up` failed; run `make e2e` (or the command) to see why:\n"
            + up.stderr[-3000:],
            returncode=3,
        )
    lines = run_kind("env", "--name", name).stdout.splitlines()
    shell = subprocess.run(
        ["bash", "-c", "\n".join([*lines, 'printf "%s\\n%s" "$KUBECONFIG" "$PATH"'])],
        capture_output=True,
        text=True,
        check=True,
    )
    kubeconfig, path = shell.stdout.split("\n", 1)
    env = {**os.environ, "KUBECONFIG": kubeconfig, "PATH": path}
    return KindEnv(name, kubeconfig, Path(path.split(":", 1)[0]), env)


@pytest.fixture(scope="session")
def kind_image(kind_env: KindEnv) -> str:
    """:data:`APP_IMAGE` in the node (``make e2e`` builds it first)."""
    kind_env.load(APP_IMAGE)
    return APP_IMAGE


@pytest.fixture
def kind_namespace(kind_env: KindEnv, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of this test's own, deleted afterwards (without waiting)."""
    name = f"kk-e2e-{RUN_ID}-{next(_namespaces)}"
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"killkrill.io/test-run": RUN_ID}},
    }
    kind_env.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    # Pods need the namespace's default service account, made by a controller.
    deadline = time.monotonic() + 60
    while kind_env.kubectl("-n", name, "get", "serviceaccount", "default",
                           check=False).returncode != 0:  # fmt: skip
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {name} got no default service account in 60s")
        time.sleep(0.5)
    yield name
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        sys.stdout.write(kind_env.describe_namespace(name))
    kind_env.kubectl("delete", "namespace", name, "--wait=false", check=False)
