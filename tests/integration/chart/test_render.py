"""The chart as helm renders it: `helm lint --strict` and `helm template` of the default
values and of every ci values file; the objects, labels, security settings, RBAC rules and
values they carry; the values schema refusing what it must."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    APP_VERSION,
    CHART,
    CI_VALUES,
    PIPELINE_CRD,
    Helm,
    documents,
    find,
    kinds,
    values_args,
)
from killkrill_command import REPO

VALUES = [None, *CI_VALUES]
IDS = ["default", *(p.name for p in CI_VALUES)]

LABELS = (
    "helm.sh/chart",
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
)

NAMESPACED_RULES = [
    {"apiGroups": ["killkrill.io"], "resources": ["pipelines"],
     "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": ["killkrill.io"], "resources": ["pipelines/status"],
     "verbs": ["get", "patch", "update"]},
    {"apiGroups": ["apps"], "resources": ["deployments"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["services", "configmaps", "serviceaccounts"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"],
     "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]  # fmt: skip
CLUSTER_RULES = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "verbs": ["list", "watch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
     "resourceNames": [PIPELINE_CRD], "verbs": ["get"]},
]  # fmt: skip


def peering_rules(resource: str, name: str = "killkrill") -> list[dict[str, Any]]:
    return [
        {"apiGroups": ["kopf.dev"], "resources": [resource], "verbs": ["list", "watch"]},
        {"apiGroups": ["kopf.dev"], "resources": [resource], "resourceNames": [name],
         "verbs": ["get", "patch"]},
    ]  # fmt: skip


@pytest.mark.parametrize("values_file", VALUES, ids=IDS)
def test_lint_strict(helm: Helm, values_file: Path | None) -> None:
    out = helm.ok("lint", "--strict", str(CHART), *values_args(values_file))
    assert "1 chart(s) linted, 0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out


@pytest.mark.parametrize("values_file", VALUES, ids=IDS)
def test_every_object_is_labelled_and_the_operator_restricted(
    helm: Helm, values_file: Path | None
) -> None:
    docs = helm.template("-n", "kk-ns", *values_args(values_file))
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        assert all(key in labels for key in LABELS), (doc["kind"], labels)
        assert labels["app.kubernetes.io/instance"] == "kk"
        assert (
            labels["helm.sh/chart"]
            == f"killkrill-{yaml.safe_load((CHART / 'Chart.yaml').read_text())['version']}"
        )
    deployment = find(docs, "Deployment", "kk-killkrill-operator")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    [container] = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["image"] == f"killkrill/killkrill:{APP_VERSION}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][0] == "operator"
    assert "--health-port=8081" in container["args"]
    assert container["ports"] == [{"name": "ops", "containerPort": 8081, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "ops"}
    assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["serviceAccountName"] == "kk-killkrill-operator"
    assert pod["automountServiceAccountToken"] is True
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "killkrill",
        "app.kubernetes.io/instance": "kk",
        "app.kubernetes.io/component": "operator",
    }
    service = find(docs, "Service", "kk-killkrill-operator")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "ops", "port": 8081, "targetPort": "ops", "protocol": "TCP"}
    ]
    test_pod = find(docs, "Pod", "kk-killkrill-operator-test-healthz")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [checker] = test_pod["spec"]["containers"]
    assert checker["image"] == container["image"]
    assert "http://kk-killkrill-operator.kk-ns.svc:8081/healthz" in checker["command"][-1]
    assert checker["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert test_pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for doc in docs:  # no wildcard in any rule
        for rule in doc.get("rules", []):
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule


def test_default_values_watch_every_namespace_with_a_cluster_role(helm: Helm) -> None:
    docs = helm.template("-n", "kk-ns")
    assert kinds(docs) == sorted([
        "ClusterKopfPeering", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
        "Deployment", "Pod", "Service", "ServiceAccount",
    ])  # fmt: skip
    role = find(docs, "ClusterRole")
    assert role["metadata"]["name"] == "kk-killkrill-operator"
    assert role["rules"] == NAMESPACED_RULES + CLUSTER_RULES + peering_rules("clusterkopfpeerings")
    binding = find(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "kk-killkrill-operator"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kk-killkrill-operator", "namespace": "kk-ns"}
    ]
    assert find(docs, "ClusterKopfPeering")["metadata"]["name"] == "killkrill"
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "operator", "--health-port=8081", "--interval=15", "--log-level=info",
        "--peering=killkrill",
    ]  # fmt: skip
    assert find(docs, "Deployment")["spec"]["replicas"] == 1


def test_watched_namespaces_get_a_role_each(helm: Helm) -> None:
    docs = helm.template("-n", "kk-ns", "-f", str(CHART / "ci/namespaced-values.yaml"))
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "RoleBinding"}
    assert sorted(roles) == sorted(bindings) == ["team-a", "team-b"]
    for namespace, role in roles.items():
        assert role["rules"] == NAMESPACED_RULES + peering_rules("kopfpeerings")
        assert bindings[namespace]["subjects"] == [
            {"kind": "ServiceAccount", "name": "kk-killkrill-operator", "namespace": "kk-ns"}
        ]
    cluster_role = find(docs, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "kk-killkrill-operator-cluster"
    assert cluster_role["rules"] == CLUSTER_RULES  # nothing namespaced cluster-wide
    peerings = [d for d in docs if d["kind"] == "KopfPeering"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert "ClusterKopfPeering" not in kinds(docs)
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-2:] == ["--namespace=team-a", "--namespace=team-b"]


def test_two_replicas_and_a_service_monitor_where_prometheus_runs(helm: Helm) -> None:
    replicas = str(CHART / "ci/replicas-values.yaml")
    docs = helm.template("-f", replicas)
    assert find(docs, "Deployment")["spec"]["replicas"] == 2
    assert "ServiceMonitor" not in kinds(docs)  # the cluster does not serve its kind
    docs = helm.template("-f", replicas, "--api-versions", "monitoring.coreos.com/v1")
    monitor = find(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "ops", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_the_example_pipeline(helm: Helm) -> None:
    docs = helm.template("-n", "kk-ns", "-f", str(CHART / "ci/pipeline-values.yaml"))
    pipeline = find(docs, "Pipeline", "example")
    assert pipeline["apiVersion"] == "killkrill.io/v1alpha1"
    assert pipeline["metadata"]["namespace"] == "kk-ns"
    spec = pipeline["spec"]
    assert spec["image"] == {
        "repository": "killkrill/killkrill", "tag": APP_VERSION, "pullPolicy": "IfNotPresent",
    }  # fmt: skip
    assert spec["redis"]["secretRef"] == {"name": "killkrill-redis", "key": "password"}
    assert "CustomResourceDefinition" not in kinds(docs)
    # The image of the spec wins over the chart's, key by key.
    docs = helm.template(
        "-f", str(CHART / "ci/pipeline-values.yaml"),
        "--set", "pipeline.spec.image.tag=9.9.9", "--set", "image.repository=r.example/kk",
    )  # fmt: skip
    assert find(docs, "Pipeline")["spec"]["image"] == {
        "repository": "r.example/kk", "tag": "9.9.9", "pullPolicy": "IfNotPresent",
    }  # fmt: skip


def test_a_pipeline_waits_for_the_crd_its_release_installs(helm: Helm) -> None:
    """helm maps every object before creating any: a Pipeline beside the CRD that defines it
    would fail the first install, so it is left out until the cluster serves the kind."""
    docs = helm.template("--set", "pipeline.create=true")
    assert "Pipeline" not in kinds(docs) and "CustomResourceDefinition" in kinds(docs)
    docs = helm.template(
        "--set", "pipeline.create=true", "--api-versions", "killkrill.io/v1alpha1/Pipeline"
    )
    assert "Pipeline" in kinds(docs)


def test_the_example_pipeline_must_be_watched(helm: Helm) -> None:
    done = helm.run(
        "template", "kk", str(CHART), "-n", "kk-ns",
        "-f", str(CHART / "ci/namespaced-values.yaml"), "--set", "pipeline.create=true",
        "--set", "crds.install=false",
    )  # fmt: skip
    assert done.returncode != 0
    assert 'pipeline.namespace "kk-ns" is not among operator.watchNamespaces' in done.stderr
    docs = helm.template(
        "-f", str(CHART / "ci/namespaced-values.yaml"), "--set", "pipeline.create=true",
        "--set", "crds.install=false", "--set", "pipeline.namespace=team-b",
    )  # fmt: skip
    assert find(docs, "Pipeline")["metadata"]["namespace"] == "team-b"


def _crds_dir() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        for doc in documents(path.read_text()):
            found[doc["metadata"]["name"]] = doc
    return found


def test_the_crds_are_the_generated_ones(helm: Helm) -> None:
    expected = _crds_dir()
    docs = helm.template("--include-crds")
    crds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert sorted(crds) == sorted(expected)
    for name, crd in crds.items():
        meta = crd["metadata"]
        if name == PIPELINE_CRD:  # the template: the chart's labels, kept on uninstall
            assert meta["annotations"] == {"helm.sh/resource-policy": "keep"}
            assert all(key in meta["labels"] for key in LABELS)
        else:  # kopf's, from the chart's crds/ as they are
            assert "annotations" not in meta
        assert {k: v for k, v in crd.items() if k != "metadata"} == {
            k: v for k, v in expected[name].items() if k != "metadata"
        }, name
        assert meta["labels"].items() >= expected[name]["metadata"]["labels"].items()
    docs = helm.template("--set", "crds.keep=false")
    assert "annotations" not in find(docs, "CustomResourceDefinition")["metadata"]
    docs = helm.template("--set", "crds.install=false")
    assert "CustomResourceDefinition" not in kinds(docs)


def test_values_reach_the_operator(helm: Helm) -> None:
    docs = helm.template(
        "--set", "image.repository=registry.example/kk/killkrill", "--set", "image.tag=1.2.3",
        "--set", "image.pullPolicy=Always", "--set", "operator.interval=5",
        "--set", "operator.logLevel=debug", "--set", "operator.peering.enabled=false",
        "--set", "operator.healthPort=9000", "--set-json", 'operator.extraArgs=["--priority","7"]',
        "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops",
        "--set", "imagePullSecrets[0].name=regcred",
    )  # fmt: skip
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "registry.example/kk/killkrill:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"] == [
        "operator", "--health-port=9000", "--interval=5", "--log-level=debug", "--standalone",
        "--priority", "7",
    ]  # fmt: skip
    assert container["ports"][0]["containerPort"] == 9000
    assert pod["serviceAccountName"] == "ops" and pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert "ServiceAccount" not in kinds(docs)
    assert "ClusterKopfPeering" not in kinds(docs)  # no peering: no peering object
    assert find(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "ops"
    assert not [r for r in find(docs, "ClusterRole")["rules"] if "kopf.dev" in r["apiGroups"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "replicas=2"], "additional properties 'replicas' not allowed"),
        (["--set", "operator.replica=2"], "additional properties 'replica' not allowed"),
        (["--set", "operator.replicas=two"], "at '/operator/replicas': got string, want integer"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "operator.logLevel=loud"], "at '/operator/logLevel'"),
        (["--set", "operator.watchNamespaces={Team_A}"], "at '/operator/watchNamespaces/0'"),
        (["--set", "crds.install=yes"], "at '/crds/install': got string, want boolean"),
        (["--set", "pipeline.spec.redis.ulr=redis://x"], "additional properties 'ulr' not allowed"),
        (["--set", "pipeline.spec.logWorker.batchSize=0"], "at '/pipeline/spec/logWorker/batchSize'"),
        (["--set", "pipeline.spec.receivers.http.port=http"], "at '/pipeline/spec/receivers/http/port'"),
        (["--set", "pipeline.name=Example"], "at '/pipeline/name'"),
    ],
    ids=lambda v: v[1] if isinstance(v, list) else None,
)  # fmt: skip
def test_the_schema_refuses(helm: Helm, args: list[str], message: str) -> None:
    done = helm.run("lint", "--strict", str(CHART), *args)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
