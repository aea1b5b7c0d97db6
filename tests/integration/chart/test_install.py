"""The chart in the real API server: server-side dry runs of every rendered object, `helm
install`, `upgrade` and `uninstall` into a namespace of the test (restricted Pod Security
enforced), every object read back; and the Pipeline CRD's life in a release (taken over,
updated by an upgrade, kept by the uninstall)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chart_helpers import (
    APP_VERSION,
    CHART,
    CI_VALUES,
    PIPELINE_CRD,
    Helm,
    cluster_lock,
    documents,
    find,
    release_args,
    values_args,
)
from killkrill_command import REPO
from kube_cluster import KubeEnv
from polling import wait_for

from killkrill.operator.kube import KubeClient

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}


def restrict(kube_env: KubeEnv, namespace: str) -> None:
    """Pod Security ``restricted`` enforced in ``namespace``: the API server refuses a pod
    of the chart that breaks it (the ReplicaSet controller's, not only dry runs)."""
    labels = [f"{k}={v}" for k, v in RESTRICTED.items()]
    done = kube_env.kubectl("label", "namespace", namespace, *labels, "--overwrite")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "values_file", [None, *CI_VALUES], ids=["default", *(p.name for p in CI_VALUES)]
)
def test_server_side_dry_run_of_every_object(
    helm: Helm, kube_env: KubeEnv, kube_namespace: str, crds: None, values_file: Path | None
) -> None:
    """Every object the chart renders (its crds/ included) is accepted by the API server:
    schemas, the Pipeline CRD's own validation and CEL rules for the example Pipeline, RBAC
    rules, Pod Security. Watched namespaces are the test's (the ci file's do not exist)."""
    restrict(kube_env, kube_namespace)
    args = [*values_args(values_file), "-n", kube_namespace, "--include-crds"]
    if values_file is not None and "watchNamespaces" in values_file.read_text():
        args += ["--set", f"operator.watchNamespaces={{{kube_namespace}}}"]
    rendered = helm.ok("template", "kk", str(CHART), *args)
    docs = documents(rendered)
    done = kube_env.kubectl(
        "apply", "--dry-run=server", "--server-side", "--force-conflicts",
        "--field-manager=killkrill-chart-test", "-n", kube_namespace, "-f", "-",
        input=rendered,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "PodSecurity" not in done.stderr and "Warning" not in done.stderr, done.stderr
    assert done.stdout.count("(server dry run)") == len(docs), done.stdout


def _release_objects(kube: KubeClient, namespace: str, release: str) -> list[str]:
    """What of the release is in the cluster: ``kind/name`` of everything labelled with its
    instance, of every kind the chart makes, and its helm storage Secrets."""
    instance = {"app.kubernetes.io/instance": release}
    found = []
    for api, kind, ns in (
        ("apps/v1", "Deployment", namespace),
        ("apps/v1", "ReplicaSet", namespace),
        ("v1", "Pod", namespace),
        ("v1", "Service", namespace),
        ("v1", "ServiceAccount", namespace),
        ("killkrill.io/v1alpha1", "Pipeline", namespace),
        ("rbac.authorization.k8s.io/v1", "Role", namespace),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", namespace),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", None),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None),
    ):
        found += [
            f"{kind}/{o['metadata']['name']}" for o in kube.list(api, kind, ns, labels=instance)
        ]
    found += [
        f"Secret/{o['metadata']['name']}"
        for o in kube.list("v1", "Secret", namespace, labels={"owner": "helm", "name": release})
    ]
    if _exists(kube, f"/apis/kopf.dev/v1/clusterkopfpeerings/{release}"):
        found.append(f"ClusterKopfPeering/{release}")
    return sorted(found)


def _exists(kube: KubeClient, path: str) -> bool:
    from killkrill.errors import KubernetesApiError

    try:
        kube.request("GET", path)
    except KubernetesApiError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_install_upgrade_uninstall(
    helm: Helm, kube: KubeClient, kube_env: KubeEnv, kube_namespace: str, release: str
) -> None:
    ns = kube_namespace
    restrict(kube_env, ns)
    out = helm.ok("install", release, str(CHART), "-n", ns, *release_args(release))
    operator = f"{release}-killkrill-operator"
    # NOTES: what to do next
    assert (
        f"KillKrill {APP_VERSION}: the operator runs as deployment/{operator} in namespace {ns}, watching Pipelines in every namespace."
        in out
    )
    assert f"helm test {release} -n {ns}" in out
    assert f"kubectl -n {ns} apply -f examples/pipeline.yaml" in out
    assert f"kubectl -n {ns} get kkp" in out
    assert f"kubectl -n {ns} port-forward service/example-receiver 8081:8081" in out
    assert "curl -XPOST localhost:8081/api/v1/logs" in out

    rendered = {
        (d["kind"], d["metadata"]["name"]): d
        for d in helm.template("-n", ns, *release_args(release), release=release)
    }
    deployment = kube.get("apps/v1", "Deployment", operator, ns)
    assert deployment is not None
    want = rendered["Deployment", operator]["spec"]["template"]["spec"]
    got = deployment["spec"]["template"]["spec"]
    [container], [expected] = got["containers"], want["containers"]
    assert container["image"] == f"killkrill/killkrill:{APP_VERSION}"
    assert container["args"] == expected["args"]
    assert container["securityContext"] == expected["securityContext"]
    assert got["securityContext"] == want["securityContext"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "384Mi"},
    }  # fmt: skip
    assert got["serviceAccountName"] == operator and deployment["spec"]["replicas"] == 1
    # The API server admitted the pod under `restricted` (no kubelet runs it: Pending).
    pods = wait_for(
        lambda: kube.list("v1", "Pod", ns, labels={"app.kubernetes.io/instance": release}),
        30, "the operator's pod",
    )  # fmt: skip
    assert pods[0]["status"]["phase"] == "Pending"
    account = kube.get("v1", "ServiceAccount", operator, ns)
    assert account is not None and account["automountServiceAccountToken"] is False
    role = kube.get("rbac.authorization.k8s.io/v1", "ClusterRole", operator)
    assert role is not None and role["rules"] == rendered["ClusterRole", operator]["rules"]
    binding = kube.get("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", operator)
    assert binding is not None
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": operator, "namespace": ns}]
    service = kube.get("v1", "Service", operator, ns)
    assert service is not None and service["spec"]["clusterIP"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("ops", 8081, "ops")
    ]
    assert _exists(kube, f"/apis/kopf.dev/v1/clusterkopfpeerings/{release}")

    out = helm.ok(
        "upgrade", release, str(CHART), "-n", ns, *release_args(release),
        "-f", str(CHART / "ci/pipeline-values.yaml"), "--set", "operator.replicas=2",
        "--set", "operator.interval=30",
    )  # fmt: skip
    assert "REVISION: 2" in out
    assert f'The example Pipeline "example" was created in {ns}' in out
    deployment = kube.get("apps/v1", "Deployment", operator, ns)
    assert deployment is not None and deployment["spec"]["replicas"] == 2
    assert "--interval=30" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    pipeline = kube.get("killkrill.io/v1alpha1", "Pipeline", "example", ns)
    assert pipeline is not None
    spec = pipeline["spec"]
    assert spec["redis"]["url"] == "redis://redis:6379/0"
    assert spec["image"]["tag"] == APP_VERSION
    assert spec["logWorker"]["batchSize"] == 500  # defaulted by the CRD's schema
    status = json.loads(helm.ok("status", release, "-n", ns, "-o", "json"))
    assert status["version"] == 2 and status["info"]["status"] == "deployed"

    left = _release_objects(kube, ns, release)
    assert f"Deployment/{operator}" in left and "Pipeline/example" in left
    out = helm.ok("uninstall", release, "-n", ns, "--wait")
    assert f'release "{release}" uninstalled' in out
    assert "kept due to the resource policy" not in out  # crds.install=false: no CRD here
    wait_for(lambda: not _release_objects(kube, ns, release), 30, "nothing left of the release")
    # The example Pipeline's own objects (when an operator reconciled it) go with it.
    wait_for(
        lambda: not kube.list("apps/v1", "Deployment", ns) and not kube.list("v1", "Pod", ns),
        30, "no Deployment or Pod left in the namespace",
    )  # fmt: skip
    assert helm.ok("list", "-n", ns, "-q").strip() == ""


def _strip_helm_ownership(kube_env: KubeEnv) -> None:
    """Give the CRD back as the other runs' tests find it: no release owns it."""
    kube_env.kubectl(
        "annotate", "crd", PIPELINE_CRD, "meta.helm.sh/release-name-",
        "meta.helm.sh/release-namespace-", "helm.sh/resource-policy-",
    )  # fmt: skip
    kube_env.kubectl(
        "label", "crd", PIPELINE_CRD, "app.kubernetes.io/managed-by-",
        "app.kubernetes.io/instance-", "app.kubernetes.io/name-", "app.kubernetes.io/version-",
        "helm.sh/chart-",
    )  # fmt: skip


def _forget_release(kube_env: KubeEnv, namespace: str, release: str) -> None:
    """The release's objects deleted by hand and its helm records dropped, so that no
    uninstall can delete the shared CRD (used when the release did not keep it)."""
    kube_env.kubectl("delete", "secret", "-n", namespace, "-l", f"owner=helm,name={release}")
    kube_env.kubectl(
        "delete", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={release}"
    )
    kube_env.kubectl("delete", "clusterkopfpeering", release, "--ignore-not-found")


def test_crd_lifecycle(
    helm: Helm, kube: KubeClient, kube_env: KubeEnv, kube_namespace: str, release: str
) -> None:
    """With crds.install (the default), the release owns the Pipeline CRD: installed over the
    one `kubectl apply` made (--take-ownership, as the README says), set back to the chart's
    by an upgrade, and kept (same uid) by the uninstall. The CRD is shared by every test run
    of the machine: a lock keeps two runs from taking it at once."""
    ns = kube_namespace
    crd_api = ("apiextensions.k8s.io/v1", "CustomResourceDefinition", PIPELINE_CRD)
    generated = yaml.safe_load((REPO / "crds" / f"{PIPELINE_CRD}.yaml").read_text())
    peering = ["--set", f"operator.peering.name={release}"]
    with cluster_lock(kube_env, PIPELINE_CRD):
        before = kube.get(*crd_api)
        assert before is not None
        kept = False
        try:
            helm.ok("install", release, str(CHART), "-n", ns, "--take-ownership", *peering)
            manifest = documents(helm.ok("get", "manifest", release, "-n", ns))
            in_release = find(manifest, "CustomResourceDefinition", PIPELINE_CRD)
            kept = in_release["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert kept, in_release["metadata"]
            crd = kube.get(*crd_api)
            assert crd is not None and crd["metadata"]["uid"] == before["metadata"]["uid"]
            meta = crd["metadata"]
            assert meta["annotations"]["meta.helm.sh/release-name"] == release
            assert meta["annotations"]["meta.helm.sh/release-namespace"] == ns
            assert meta["annotations"]["helm.sh/resource-policy"] == "keep"
            assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
            assert (
                crd["spec"]["versions"][0]["schema"] == generated["spec"]["versions"][0]["schema"]
            )
            # Changed behind helm's back, set back by the next upgrade.
            done = kube_env.kubectl(
                "label", "crd", PIPELINE_CRD, "app.kubernetes.io/part-of=drifted", "--overwrite"
            )
            assert done.returncode == 0, done.stderr
            helm.ok("upgrade", release, str(CHART), "-n", ns, *peering)
            crd = kube.get(*crd_api)
            assert crd is not None
            assert crd["metadata"]["labels"]["app.kubernetes.io/part-of"] == "killkrill"
            out = helm.ok("uninstall", release, "-n", ns, "--wait")
            assert "These resources were kept due to the resource policy" in out
            assert f"[CustomResourceDefinition] {PIPELINE_CRD}" in out
            crd = kube.get(*crd_api)
            assert crd is not None and crd["metadata"]["uid"] == before["metadata"]["uid"]
            assert crd["metadata"].get("deletionTimestamp") is None
            assert not _release_objects(kube, ns, release)
        finally:
            if not kept:  # never let an uninstall delete the CRD every run shares
                _forget_release(kube_env, ns, release)
            _strip_helm_ownership(kube_env)
