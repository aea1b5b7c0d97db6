"""Fixtures of the operator's tests, against the real control plane (``kube_env``): the
CRDs installed, one ``killkrill operator`` process for the run (every test namespace of the
run, reconciling every second), and Pipelines pointing at this run's Redis, Elasticsearch
and PostgreSQL through Secrets (their URLs hold no password).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from killkrill_command import REPO, KillkrillProcess
from kube_cluster import KubeEnv
from run_names import ES_INDEX_PREFIX, RUN_ID

sys.path.insert(0, str(Path(__file__).parent))

from operator_helpers import API, start_operator

from killkrill.operator.kube import KubeClient, KubeConfig


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed operator test shows what the operator logged (its reconciles, the errors
    and retries kopf scheduled) beside the assertion."""
    report = yield
    proc = getattr(item, "funcargs", {}).get("operator")
    if report.failed and isinstance(proc, KillkrillProcess):
        report.sections.append(("the operator's log (last 60 lines)", _tail(proc, 60)))
    return report


def _tail(proc: KillkrillProcess, lines: int) -> str:
    return "\n".join(proc.output().splitlines()[-lines:])


@pytest.fixture(scope="session")
def kube(kube_env: KubeEnv) -> Iterator[KubeClient]:
    """Our own API client (the operator's), for the tests' reads and writes."""
    client = KubeClient(KubeConfig.load(kube_env.kubeconfig))
    yield client
    client.close()


@pytest.fixture(scope="session")
def crds(kube_env: KubeEnv) -> None:
    """The CRDs of ``crds/`` installed (server-side apply) and established."""
    done = kube_env.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    assert done.returncode == 0, done.stderr
    done = kube_env.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/pipelines.killkrill.io", "crd/kopfpeerings.kopf.dev",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="session")
def operator(
    kube_env: KubeEnv, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KillkrillProcess]:
    """One operator for the run: every namespace of the run's tests, standalone."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    proc, _ = start_operator(kube_env, log, "--standalone", "--namespace", f"kk-test-{RUN_ID}-*")
    yield proc
    assert proc.stop(40) == 0, proc.output()[-4000:]


def _login(url: str) -> tuple[str, str]:
    """``url`` without its password, and the password."""
    parts = urlsplit(url)
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    host = parts.netloc.rpartition("@")[2]
    bare = parts._replace(netloc=f"{user}@{host}" if user else host).geturl()
    return bare, password


@pytest.fixture
def pipeline_spec(
    kube: KubeClient,
    kube_namespace: str,
    redis_url: str,
    elasticsearch_url: str,
    database_schema: str,
) -> dict[str, Any]:
    """A spec whose connections are this run's services, credentials in Secrets of the
    test's namespace (``redis``/``password``, ``postgres``/``password``)."""
    redis, redis_password = _login(redis_url)
    postgres, pg_password = _login(database_schema)
    for name, value in (("redis", redis_password), ("postgres", pg_password)):
        kube.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "namespace": kube_namespace},
                "stringData": {"password": value},
            },
            field_manager="test",
        )
    assert "options" in parse_qs(urlsplit(postgres).query)  # the run's schema
    return {
        "redis": {"url": redis, "secretRef": {"name": "redis", "key": "password"}},
        "postgres": {"url": postgres, "secretRef": {"name": "postgres", "key": "password"}},
        "elasticsearch": {"url": elasticsearch_url, "indexPrefix": ES_INDEX_PREFIX},
        "receivers": {"http": {"auth": {"enabled": False}}},
    }


@pytest.fixture
def apply_pipeline(kube: KubeClient, kube_namespace: str) -> Callable[..., dict[str, Any]]:
    """``apply_pipeline(name, spec)``: create or update a Pipeline (server-side apply)."""

    def apply(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return kube.apply(
            {
                "apiVersion": API,
                "kind": "Pipeline",
                "metadata": {"name": name, "namespace": kube_namespace},
                "spec": spec,
            },
            field_manager="test",
        )

    return apply
