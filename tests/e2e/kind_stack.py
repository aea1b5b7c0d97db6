"""Fixtures and helpers for KillKrill itself in the kind cluster: the backing services as
pods, the chart installed, Pipelines applied and watched, data sent and counted.

* ``kind_services`` (session): Redis, PostgreSQL 15 and Elasticsearch as Deployments and
  Services (``killkrill dev kind services-image`` / ``services-manifest``) in a namespace of
  their own, ``kk-e2e-<run>-services``; the PostgreSQL password in a Secret. Pipelines reach
  them by their cluster DNS names (:meth:`Services.spec`); tests through port-forwards
  (:meth:`Services.elasticsearch`, :meth:`Services.postgres`).
* :func:`install_chart`: the chart (operator only; the CRDs applied server-side first, as
  skaffold does) in a namespace, watching only it, in a kopf peering of its own: an install
  per test module, never in the way of another (or of a ``skaffold run``).
* :class:`Stack`: one such install: Pipelines applied, their conditions awaited, their
  receivers port-forwarded.

Everything is waited on with a deadline (:func:`wait_for`); nothing sleeps a fixed time.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import pytest
from elasticsearch import Elasticsearch
from kind_cluster import APP_IMAGE, RUN_ID, KindEnv, run_kind

__all__ = [
    "REPO",
    "Services",
    "Stack",
    "install_chart",
    "kind_services",
    "make_namespace",
    "post_json",
    "run_logger",
    "uninstall_chart",
    "wait_for",
]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "killkrill"
SERVICE_IMAGES = ("killkrill/redis:7", "killkrill/postgres:15")
PG_USER = PG_DB = "killkrill"
T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout: float, what: str, *, interval: float = 1.0
) -> T:
    """Call ``probe`` until it returns something truthy (returned); fail the test with
    ``what`` after ``timeout`` seconds. Errors of the probe count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except Exception as exc:  # "not yet": the last error is reported on timeout
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def make_namespace(kind_env: KindEnv, name: str) -> None:
    """Create ``name`` (labelled with the run) and wait for its default service account."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"killkrill.io/test-run": RUN_ID}},
    }
    kind_env.kubectl("apply", "-f", "-", input=json.dumps(namespace))
    wait_for(
        lambda: kind_env.run("kubectl", "-n", name, "get", "sa", "default").returncode == 0,
        60,
        f"the default service account of {name}",
        interval=0.5,
    )


def post_json(url: str, body: object, *, timeout: float = 60) -> dict[str, Any]:
    """POST ``body`` as JSON; a 429/503 answer (back-pressure) is retried after its
    ``Retry-After``, within ``timeout``."""
    data = json.dumps(body).encode()
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(
            url, data=data, headers={"content-type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                parsed: dict[str, Any] = json.load(answer)
                return parsed
        except urllib.error.HTTPError as exc:
            if exc.code not in (429, 503) or time.monotonic() > deadline:
                raise
            time.sleep(min(float(exc.headers.get("retry-after") or 1), 5))


@dataclass(frozen=True)
class Services:
    """The backing services' namespace and how to reach them."""

    kind_env: KindEnv
    namespace: str
    pg_password: str

    def host(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.cluster.local"

    def spec(self, *, pg_secret: str, index_prefix: str) -> dict[str, Any]:
        """The connection part of a Pipeline spec pointing at these services (the password
        in the Secret ``pg_secret``, key ``password``, of the Pipeline's namespace)."""
        return {
            "redis": {"url": f"redis://{self.host('redis')}:6379/0"},
            "elasticsearch": {
                "url": f"http://{self.host('elasticsearch')}:9200",
                "indexPrefix": index_prefix,
                "numberOfReplicas": 0,
            },
            "postgres": {
                "url": f"postgresql://{PG_USER}@{self.host('postgres')}:5432/{PG_DB}",
                "secretRef": {"name": pg_secret, "key": "password"},
            },
        }

    def pg_secret(self, name: str) -> dict[str, Any]:
        """A Secret ``name`` with the PostgreSQL password, for a Pipeline's namespace."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"password": self.pg_password},
        }

    @contextmanager
    def elasticsearch(self) -> Iterator[Elasticsearch]:
        """A client of the in-cluster Elasticsearch through a port-forward."""
        with self.kind_env.port_forward(self.namespace, "service/elasticsearch", 9200) as port:
            client = Elasticsearch(f"http://127.0.0.1:{port}", request_timeout=60)
            try:
                yield client
            finally:
                client.close()

    @contextmanager
    def postgres(self) -> Iterator[Any]:
        """A psycopg2 connection (autocommit) to the in-cluster PostgreSQL."""
        with self.kind_env.port_forward(self.namespace, "service/postgres", 5432) as port:
            conn = psycopg2.connect(
                host="127.0.0.1",
                port=port,
                user=PG_USER,
                password=self.pg_password,
                dbname=PG_DB,
                connect_timeout=30,
            )
            conn.autocommit = True
            try:
                yield conn
            finally:
                conn.close()


@pytest.fixture(scope="session")
def kind_services(kind_env: KindEnv) -> Iterator[Services]:
    """Redis, PostgreSQL and Elasticsearch running in the cluster (images built when
    missing: cached by recipe), Available; their namespace deleted afterwards."""
    built = run_kind("services-image", timeout=3600)
    if built.returncode != 0:
        pytest.fail(f"`killkrill dev kind services-image` failed: {built.stderr[-3000:]}")
    kind_env.load(*built.stdout.split())
    namespace = f"kk-e2e-{RUN_ID}-services"
    make_namespace(kind_env, namespace)
    services = Services(kind_env, namespace, secrets.token_hex(12))
    manifest = run_kind("services-manifest", "--postgres-password-secret", "postgres/password")
    if manifest.returncode != 0:
        pytest.fail(f"`killkrill dev kind services-manifest` failed: {manifest.stderr}")
    kind_env.apply(namespace, services.pg_secret("postgres"))
    kind_env.kubectl(
        "apply", "-n", namespace, "--server-side", "--field-manager=kk-e2e", "-f", "-",
        input=manifest.stdout,
    )  # fmt: skip
    try:
        for name in ("redis", "postgres", "elasticsearch"):
            kind_env.wait(namespace, f"deployment/{name}", "condition=Available", timeout=300)
        yield services
    finally:
        kind_env.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@dataclass(frozen=True)
class Stack:
    """The chart installed in ``namespace`` (release ``release``), watching only it."""

    kind_env: KindEnv
    services: Services
    namespace: str
    release: str
    pg_secret: str = "killkrill-postgres"

    def pipeline(self, name: str, spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A Pipeline object: the services' connections (index prefix ``logs-<name>``), the
        image loaded into kind, HTTP auth off, syslog TCP on 5141; ``spec`` merged over."""
        repository, tag = APP_IMAGE.rsplit(":", 1)
        body: dict[str, Any] = {
            **self.services.spec(pg_secret=self.pg_secret, index_prefix=f"logs-{name}"),
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "receivers": {
                "http": {"auth": {"enabled": False}},
                "syslog": {"tcpPort": 5141, "udpPort": 5141},
            },
        }
        for key, value in (spec or {}).items():
            if isinstance(value, dict) and isinstance(body.get(key), dict):
                body[key] = {**body[key], **value}
            else:
                body[key] = value
        return {
            "apiVersion": "killkrill.io/v1alpha1",
            "kind": "Pipeline",
            "metadata": {"name": name},
            "spec": body,
        }

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kind_env.apply(self.namespace, *objects)

    def patch(self, name: str, spec: Mapping[str, Any]) -> int:
        """Merge-patch the Pipeline's spec; its new generation."""
        done = self.kind_env.kubectl(
            "patch", "-n", self.namespace, "pipeline", name, "--type=merge",
            "-p", json.dumps({"spec": spec}), "-o", "json",
        )  # fmt: skip
        generation: int = json.loads(done.stdout)["metadata"]["generation"]
        return generation

    def get(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.kind_env.get("pipeline", "-n", self.namespace, name)
        return found

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        """The Pipeline's condition ``kind``, when it is of the current generation."""
        pipeline = self.get(name)
        generation = pipeline["metadata"]["generation"]
        status = pipeline.get("status") or {}
        if status.get("observedGeneration") != generation:
            return None
        return next(
            (c for c in status.get("conditions", []) if c["type"] == kind),
            None,
        )

    def wait_condition(
        self,
        name: str,
        kind: str,
        status: str,
        *,
        reason: str | None = None,
        timeout: float = 300,
    ) -> dict[str, Any]:
        """Wait until condition ``kind`` of the current generation has ``status`` (and
        ``reason``); returns it."""

        def probe() -> dict[str, Any] | None:
            found = self.condition(name, kind)
            if found and found["status"] == status and reason in (None, found["reason"]):
                return found
            return None

        return wait_for(
            probe,
            timeout,
            f"pipeline {name}: {kind}={status}{f' ({reason})' if reason else ''}",
            interval=2,
        )

    def ready_pods(self, name: str, component: str) -> list[str]:
        """Names of the component's pods that are Ready and not being deleted."""
        pods = self.kind_env.get(
            "pods", "-n", self.namespace,
            "-l", f"app.kubernetes.io/instance={name},app.kubernetes.io/component={component}",
        )["items"]  # fmt: skip
        return [
            p["metadata"]["name"]
            for p in pods
            if not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]

    def cluster_report(self) -> str:
        """``kubectl get pods -A`` and ``kubectl get kkp -A``: what a run shows."""
        lines = []
        for args in (("get", "pods", "-A"), ("get", "kkp", "-A")):
            done = self.kind_env.run("kubectl", *args)
            lines.append(f"$ kubectl {' '.join(args)}\n{done.stdout}{done.stderr}")
        return "\n".join(lines)


def install_chart(kind_env: KindEnv, services: Services, namespace: str, release: str) -> Stack:
    """CRDs (server-side, as skaffold's hook does), then ``helm install --wait`` of the chart
    in ``namespace``: operator image :data:`APP_IMAGE` (never pulled), watching
    ``namespace`` only, its own peering; the PostgreSQL Secret for Pipelines there."""
    repository, tag = APP_IMAGE.rsplit(":", 1)
    kind_env.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=kk-e2e",
        "-f", str(REPO / "crds"),
    )  # fmt: skip
    stack = Stack(kind_env, services, namespace, release)
    stack.apply(services.pg_secret(stack.pg_secret))
    done = kind_env.run(
        "helm", "install", release, str(CHART), "-n", namespace,
        "--set", "crds.install=false",
        "--set", f"image.repository={repository}",
        "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never",
        "--set", f"operator.watchNamespaces={{{namespace}}}",
        "--set", f"operator.peering.name={release}",
        "--set", "operator.interval=5",
        "--wait", "--timeout", "300s",
        timeout=420,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.fail(f"helm install {release} failed: {done.stderr}")
    return stack


def uninstall_chart(stack: Stack) -> None:
    """Pipelines deleted first (their pods go with them), then the release."""
    env = stack.kind_env
    env.kubectl("delete", "pipelines", "--all", "-n", stack.namespace, "--wait=true",
                "--timeout=120s", check=False)  # fmt: skip
    env.run("helm", "uninstall", stack.release, "-n", stack.namespace, "--wait", timeout=300)


def run_logger(port: int, tag: str, lines: list[str]) -> subprocess.CompletedProcess[str]:
    """util-linux ``logger`` sending ``lines`` (one message each, RFC 5424) over TCP to
    127.0.0.1:``port``: the real peer."""
    return subprocess.run(
        ["logger", "--tcp", "--rfc5424", "--server", "127.0.0.1", "--port", str(port),
         "-t", tag],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
