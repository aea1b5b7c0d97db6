"""The local control plane answers like a cluster: kubectl and helm of the pinned versions,
controllers that act (Deployments, garbage collection), CRDs with CEL validation."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from kube_cluster import KubeEnv
from polling import wait_for
from run_names import RUN_ID

from killkrill.dev.k8s.versions import (
    HELM_VERSION,
    KIND_VERSION,
    KUBERNETES_VERSION,
    SKAFFOLD_VERSION,
)


def test_kubectl_reports_the_pinned_version_on_both_sides(
    kube_env: KubeEnv, kube_namespace: str
) -> None:
    done = kube_env.kubectl("version", "-o", "json")
    assert done.returncode == 0, done.stderr
    versions = json.loads(done.stdout)
    assert versions["clientVersion"]["gitVersion"] == KUBERNETES_VERSION
    if not kube_env.given:  # a cluster given through KUBECONFIG has a version of its own
        assert versions["serverVersion"]["gitVersion"] == KUBERNETES_VERSION
    listed = kube_env.kubectl("get", "namespace", kube_namespace, "-o", "name")
    assert listed.stdout.strip() == f"namespace/{kube_namespace}", listed.stderr


def test_tools_of_the_pinned_versions_are_built(kube_env: KubeEnv) -> None:
    helm = kube_env.run("helm", "version", "--template", "{{.Version}}")
    assert (helm.returncode, helm.stdout) == (0, HELM_VERSION), helm.stderr
    kind = kube_env.run("kind", "version")
    assert kind.returncode == 0 and kind.stdout.startswith(f"kind {KIND_VERSION} "), kind.stderr
    skaffold = kube_env.run("skaffold", "version")
    assert (skaffold.returncode, skaffold.stdout.strip()) == (0, SKAFFOLD_VERSION)


def test_a_deployment_gets_a_replicaset_and_pending_pods(
    kube_api: Any, kube_namespace: str
) -> None:
    from kubernetes import client

    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    labels = {"app": "web"}
    deployment = apps.create_namespaced_deployment(
        kube_namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="web", image="nginx:unpulled")]
                    ),
                ),
            ),
        ),
    )

    def replica_set() -> Any:
        found = apps.list_namespaced_replica_set(kube_namespace).items
        return next(
            (
                rs
                for rs in found
                if any(o.uid == deployment.metadata.uid for o in rs.metadata.owner_references or [])
            ),
            None,
        )

    rs = wait_for(replica_set, 30, "the Deployment's ReplicaSet")

    def pods() -> list[Any]:
        found = core.list_namespaced_pod(kube_namespace, label_selector="app=web").items
        owned = [
            p
            for p in found
            if any(o.uid == rs.metadata.uid for o in p.metadata.owner_references or [])
        ]
        return owned if len(owned) == 2 else []

    # No scheduler, no kubelet: the Pods exist and stay Pending, unscheduled.
    for pod in wait_for(pods, 30, "two Pods of the ReplicaSet"):
        assert pod.status.phase == "Pending"
        assert pod.spec.node_name is None


def test_deleting_an_owner_garbage_collects_what_it_owns(
    kube_api: Any, kube_namespace: str
) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(
        kube_namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
    )
    core.create_namespaced_config_map(
        kube_namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="owned", owner_references=[reference]),
            data={"k": "v"},
        ),
    )
    started = time.monotonic()
    core.delete_namespaced_config_map("owner", kube_namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_config_map("owned", kube_namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, 10, "the garbage collector to delete the owned ConfigMap")
    assert time.monotonic() - started < 10


def _crd(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "min": {"type": "integer"},
                                        "max": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.min <= self.max",
                                            "message": "min must not exceed max",
                                        }
                                    ],
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def test_a_crd_cel_rule_refuses_an_invalid_object_with_its_message(
    kube_env: KubeEnv, kube_namespace: str
) -> None:
    group = f"t{RUN_ID}{uuid.uuid4().hex[:6]}.test.killkrill.io"
    crd = json.dumps(_crd(group))
    created = kube_env.kubectl("create", "-f", "-", input=crd)
    assert created.returncode == 0, created.stderr
    try:
        established = kube_env.kubectl(
            "wait", "--for=condition=Established", "--timeout=30s", f"crd/widgets.{group}"
        )
        assert established.returncode == 0, established.stderr

        def widget(name: str, low: int, high: int) -> str:
            return json.dumps(
                {
                    "apiVersion": f"{group}/v1",
                    "kind": "Widget",
                    "metadata": {"name": name, "namespace": kube_namespace},
                    "spec": {"min": low, "max": high},
                }
            )

        def accepted() -> bool:
            done = kube_env.kubectl("create", "-f", "-", input=widget("good", 1, 2))
            return done.returncode == 0

        # Discovery of a new group can lag its Established condition by a moment.
        wait_for(accepted, 30, "a valid Widget to be accepted", interval=0.5)
        bad = kube_env.kubectl("create", "-f", "-", input=widget("bad", 3, 2))
        assert bad.returncode != 0
        assert "min must not exceed max" in bad.stderr
        assert "Invalid value" in bad.stderr
    finally:
        kube_env.kubectl("delete", "crd", f"widgets.{group}", "--wait=false")
