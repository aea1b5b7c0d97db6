"""The chart's RBAC is what the operator needs, and no more: `kubectl auth can-i` as the
release's ServiceAccount for every verb it must have and for those it must not, then a real
`killkrill operator` logged in with a token of that ServiceAccount (TokenRequest API) that
reconciles a Pipeline pointing at this run's Redis, Elasticsearch and PostgreSQL.

The permissions are checked in both modes: watching some namespaces (a Role in each) and
every namespace (the ClusterRole, the same rules). The operator runs in the first, exactly
as the chart runs it (--namespace, --peering with the chart's KopfPeering): a cluster-wide
operator would also reconcile the Pipelines of the other test runs sharing this control
plane, and the ClusterRole's rules are the Role's (test_render checks both are the same).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from chart_helpers import CHART, Helm, release_args
from killkrill_command import KillkrillProcess
from kube_cluster import KubeEnv
from polling import wait_for
from run_names import ES_INDEX_PREFIX

from killkrill.dev.process import free_port
from killkrill.operator.kube import KubeClient

API = "killkrill.io/v1alpha1"

MUST = [
    ("get", "pipelines.killkrill.io"), ("list", "pipelines.killkrill.io"),
    ("watch", "pipelines.killkrill.io"), ("patch", "pipelines.killkrill.io"),
    ("update", "pipelines.killkrill.io"), ("get", "pipelines.killkrill.io:status"),
    ("patch", "pipelines.killkrill.io:status"), ("update", "pipelines.killkrill.io:status"),
    *((verb, kind) for kind in (
        "deployments.apps", "services", "configmaps", "serviceaccounts",
        "poddisruptionbudgets.policy",
    ) for verb in ("get", "list", "watch", "create", "update", "patch", "delete")),
    ("get", "secrets/any-name"),
    ("create", "events"), ("patch", "events"),
    ("create", "events.events.k8s.io"), ("patch", "events.events.k8s.io"),
]  # fmt: skip
MUST_NOT = [
    ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"), ("update", "secrets"),
    ("delete", "secrets"), ("create", "pods"), ("delete", "pods"), ("create", "pipelines.killkrill.io"),
    ("delete", "pipelines.killkrill.io"), ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"), ("escalate", "roles.rbac.authorization.k8s.io"),
    ("create", "pods:exec"), ("impersonate", "serviceaccounts"),
    ("create", "serviceaccounts:token"), ("delete", "namespaces"),
]  # fmt: skip
CLUSTER_MUST = [
    ("list", "namespaces"), ("watch", "namespaces"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("get", "customresourcedefinitions.apiextensions.k8s.io/pipelines.killkrill.io"),
]  # fmt: skip
CLUSTER_MUST_NOT = [
    ("get", "customresourcedefinitions.apiextensions.k8s.io/other.example.com"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"), ("get", "nodes"),
    ("create", "clusterroles.rbac.authorization.k8s.io"), ("create", "namespaces"),
]  # fmt: skip


def can(kube: KubeClient, account: str, verb: str, what: str, namespace: str = "") -> bool:
    """Whether ``account`` may ``verb`` ``what`` (``resource[.group][/name][:subresource]``),
    by a SubjectAccessReview: the API server's own answer, as `kubectl auth can-i --as`
    gives it, without a process per question."""
    what, _, subresource = what.partition(":")
    resource, _, name = what.partition("/")
    plural, _, group = resource.partition(".")
    ns = account.split(":")[2]
    review = kube.request(
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        body={
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": account,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}",
                           "system:authenticated"],
                "resourceAttributes": {
                    "namespace": namespace, "verb": verb, "group": group, "resource": plural,
                    "subresource": subresource, "name": name,
                },
            },
        },
    )  # fmt: skip
    return bool(review["status"].get("allowed"))


def token_kubeconfig(kube_env: KubeEnv, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig of the cluster whose only credential is a fresh token of ``account``
    (never echoed: it is a credential)."""
    done = subprocess.run(
        [str(kube_env.bin_dir / "kubectl"), "create", "token", account, "-n", namespace,
         "--duration=10m"],
        env=kube_env.env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(Path(kube_env.kubeconfig).read_text())
    config["users"] = [{"name": account, "user": {"token": done.stdout.strip()}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _login(url: str) -> tuple[str, str]:
    """``url`` without its password, and the password."""
    parts = urlsplit(url)
    user, _, password = parts.netloc.rpartition("@")[0].partition(":")
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{user}@{host}" if user else host).geturl(), password


@pytest.fixture
def pipeline_spec(
    kube: KubeClient,
    kube_namespace: str,
    redis_url: str,
    elasticsearch_url: str,
    database_schema: str,
) -> dict[str, Any]:
    """A spec whose connections are this run's services, their passwords in Secrets of the
    test's namespace (which the operator may only `get`)."""
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
    return {
        "redis": {"url": redis, "secretRef": {"name": "redis", "key": "password"}},
        "postgres": {"url": postgres, "secretRef": {"name": "postgres", "key": "password"}},
        "elasticsearch": {"url": elasticsearch_url, "indexPrefix": ES_INDEX_PREFIX},
        "receivers": {"http": {"auth": {"enabled": False}}},
    }


@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
def test_the_service_account_may_do_what_the_operator_needs_and_no_more(
    helm: Helm,
    kube: KubeClient,
    kube_env: KubeEnv,
    kube_namespace: str,
    release: str,
    mode: str,
) -> None:
    ns = kube_namespace
    args = [*release_args(release)]
    if mode == "namespaced":
        args += ["--set", f"operator.watchNamespaces={{{ns}}}"]
    helm.ok("install", release, str(CHART), "-n", ns, *args)
    name = f"{release}-killkrill-operator"
    account = f"system:serviceaccount:{ns}:{name}"

    denied = [(v, w) for v, w in MUST if not can(kube, account, v, w, ns)]
    assert not denied, f"{mode}: the operator may not {denied} in its namespace"
    allowed = [(v, w) for v, w in MUST_NOT if can(kube, account, v, w, ns)]
    assert not allowed, f"{mode}: the operator may {allowed}"
    denied = [(v, w) for v, w in CLUSTER_MUST if not can(kube, account, v, w)]
    assert not denied, f"{mode}: the operator may not {denied}"
    allowed = [(v, w) for v, w in CLUSTER_MUST_NOT if can(kube, account, v, w)]
    assert not allowed, f"{mode}: the operator may {allowed}"
    peerings = "kopfpeerings.kopf.dev" if mode == "namespaced" else "clusterkopfpeerings.kopf.dev"
    scope = ns if mode == "namespaced" else ""
    for verb in ("list", "watch"):
        assert can(kube, account, verb, peerings, scope)
    for verb in ("get", "patch"):
        assert can(kube, account, verb, f"{peerings}/{release}", scope)
        assert not can(kube, account, verb, f"{peerings}/another-peering", scope)
    everywhere = [(v, w) for v, w in MUST if can(kube, account, v, w, "kube-system")]
    if mode == "namespaced":  # nothing outside the watched namespaces
        assert not everywhere, f"the operator may {everywhere} in kube-system"
    else:  # every namespace
        assert everywhere == MUST


def test_the_operator_reconciles_with_the_charts_rbac_alone(
    helm: Helm,
    kube: KubeClient,
    kube_env: KubeEnv,
    kube_namespace: str,
    release: str,
    pipeline_spec: dict[str, Any],
    tmp_path: Path,
) -> None:
    ns, mode = kube_namespace, "namespaced"
    args = [*release_args(release), "--set", f"operator.watchNamespaces={{{ns}}}"]
    helm.ok("install", release, str(CHART), "-n", ns, *args)
    name = f"{release}-killkrill-operator"
    kubeconfig = token_kubeconfig(kube_env, ns, name, tmp_path / "operator.kubeconfig")
    port = free_port()
    flags = ["--peering", release]
    env = {**kube_env.env, "KUBECONFIG": str(kubeconfig)}
    proc = KillkrillProcess(
        ["operator", "--namespace", ns, *flags, "--health-port", str(port), "--interval", "1"],
        env,
        tmp_path / "operator.log",
    )
    try:

        def healthy() -> bool:
            assert proc.proc.poll() is None, proc.output()[-4000:]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 60, "the operator's /healthz")
        kube.apply(
            {"apiVersion": API, "kind": "Pipeline", "metadata": {"name": "rbac", "namespace": ns},
             "spec": pipeline_spec},
            field_manager="test",
        )  # fmt: skip

        def reconciled() -> bool:
            obj = kube.get(API, "Pipeline", "rbac", ns)
            conditions = {
                c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []
            }
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            return (
                "Ready" in conditions
                and conditions.get("Degraded", {}).get("status") == "False"
                and 'killkrill_operator_reconciles_total{outcome="ok"}' in metrics
                and 'killkrill_operator_reconciles_total{outcome="ok"} 0.0' not in metrics
            )

        wait_for(reconciled, 60, "a clean reconcile of the Pipeline", interval=0.5)
        for component in ("receiver", "log-worker", "metrics-worker"):
            assert kube.get("apps/v1", "Deployment", f"rbac-{component}", ns) is not None
        assert kube.get("v1", "ConfigMap", "rbac-config", ns) is not None
        assert kube.get("v1", "ServiceAccount", "rbac-killkrill", ns) is not None
        assert kube.get("policy/v1", "PodDisruptionBudget", "rbac-receiver", ns) is not None
        events = kube.list("v1", "Event", ns)
        assert any(e["involvedObject"].get("name") == "rbac" for e in events)
        # the chart's peering object holds the operator's keep-alive
        peering = kube.request("GET", f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{release}")
        assert peering.get("status"), f"{mode}: {peering}"
    finally:
        code = proc.stop(40)
    output = proc.output()
    assert code == 0, output[-4000:]
    for refused in ("403", "Forbidden", "forbidden", "Not enough permissions"):
        assert refused not in output, f"{refused!r} in the operator's log:\n{output[-4000:]}"
    # No operator runs now (as after `helm uninstall`): the Pipeline still goes (no finalizer
    # waits for one), and what it made with it.
    pipeline = kube.get(API, "Pipeline", "rbac", ns)
    assert pipeline is not None and not pipeline["metadata"].get("finalizers"), pipeline["metadata"]
    assert kube.delete(API, "Pipeline", "rbac", ns)
    wait_for(
        lambda: kube.get(API, "Pipeline", "rbac", ns) is None
        and kube.get("apps/v1", "Deployment", "rbac-receiver", ns) is None,
        30, "the Pipeline and its Deployments gone",
    )  # fmt: skip
