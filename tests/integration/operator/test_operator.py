"""The operator against a real API server and controller manager: objects created, kept as
declared, rolled on config and Secret changes, garbage-collected; status conditions from
what it observes, Redis's data plane included. (No kubelet runs here: pods stay Pending,
so ``Ready`` is False with ``PodsNotReady``; real pods come with the kind cluster.)"""

from __future__ import annotations

import time
from typing import Any

from operator_helpers import API, condition, dump, pipeline_status_says, wait_gone
from polling import wait_for

from killkrill.operator.handlers import GONE
from killkrill.operator.kube import KubeClient
from killkrill.operator.render import CONFIG_HASH


def _deployment(kube: KubeClient, ns: str, name: str) -> dict[str, Any] | None:
    return kube.get("apps/v1", "Deployment", name, ns)


def _hash(deployment: dict[str, Any] | None) -> str:
    assert deployment is not None
    return str(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH])


def test_a_pipeline_becomes_its_objects_with_status(
    operator: Any, kube: KubeClient, kube_namespace: str, pipeline_spec: dict[str, Any],
    apply_pipeline: Any,
) -> None:  # fmt: skip
    ns = kube_namespace
    created = apply_pipeline("alpha", pipeline_spec)
    uid = created["metadata"]["uid"]
    status = wait_for(
        pipeline_status_says(kube, ns, "alpha", lambda p: condition(p, "Ready") is not None),
        60,
        "a status",
    )
    deployments = {
        n: wait_for(lambda n=n: _deployment(kube, ns, n), 30, n)
        for n in ("alpha-receiver", "alpha-log-worker", "alpha-metrics-worker")
    }
    for name, d in deployments.items():
        assert d["metadata"]["ownerReferences"][0]["uid"] == uid
        assert d["metadata"]["ownerReferences"][0]["controller"] is True
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "alpha"
        assert labels["app.kubernetes.io/managed-by"] == "killkrill-operator"
        assert labels["app.kubernetes.io/part-of"] == "killkrill"
        assert labels["app.kubernetes.io/component"] == name.removeprefix("alpha-")
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [container] = pod["containers"]
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        mounted = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert "redis" in mounted
        env = {e["name"] for e in container.get("env", [])}
        assert not any("PASSWORD" in e for e in env)
    for service in ("alpha-receiver", "alpha-syslog"):
        svc = kube.get("v1", "Service", service, ns)
        assert svc is not None and svc["metadata"]["ownerReferences"][0]["uid"] == uid
    config = kube.get("v1", "ConfigMap", "alpha-config", ns)
    assert config is not None
    text = config["data"]["config.yaml"]
    assert "/var/run/secrets/killkrill/redis/password" in text
    assert "password_file" in text and ":" not in text.split("redis://", 1)[1].split("@")[0]
    # a ReplicaSet for each Deployment, by the real controller manager
    wait_for(lambda: len(kube.list("apps/v1", "ReplicaSet", ns)) >= 3, 30, "ReplicaSets")
    st = status["status"]
    assert st["observedGeneration"] == created["metadata"]["generation"]
    assert {c["type"] for c in st["conditions"]} == {
        "Ready",
        "Progressing",
        "Degraded",
        "DataFlowing",
    }
    ready = condition(status, "Ready")
    assert ready is not None and ready["status"] == "False"
    assert ready["reason"] in ("PodsNotReady", "DataNotFlowing"), dump(st)
    assert condition(status, "Degraded")["status"] == "False"  # type: ignore[index]


def test_changes_roll_the_pods_and_hand_edits_are_undone(
    operator: Any, kube: KubeClient, kube_namespace: str, pipeline_spec: dict[str, Any],
    apply_pipeline: Any,
) -> None:  # fmt: skip
    ns = kube_namespace
    apply_pipeline("beta", pipeline_spec)
    log = wait_for(lambda: _deployment(kube, ns, "beta-log-worker"), 60, "the log worker")
    metrics = wait_for(lambda: _deployment(kube, ns, "beta-metrics-worker"), 60, "metrics")
    before, metrics_before = _hash(log), _hash(metrics)

    spec = {
        **pipeline_spec,
        "logWorker": {"replicas": 3, "batchSize": 200},
        "elasticsearch": {**pipeline_spec["elasticsearch"],
                          "enrichment": {"environment": "staging"}},
    }  # fmt: skip
    apply_pipeline("beta", spec)

    def rolled() -> dict[str, Any] | None:
        d = _deployment(kube, ns, "beta-log-worker")
        return d if d and d["spec"]["replicas"] == 3 and _hash(d) != before else None

    wait_for(rolled, 30, "replicas 3 and a new config hash")
    config = kube.get("v1", "ConfigMap", "beta-config", ns)
    assert config is not None
    assert "batch_size: 200" in config["data"]["config.yaml"]
    assert "environment: staging" in config["data"]["config.yaml"]

    # the referenced Secret changes: every component mounting it rolls
    kube.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "postgres", "namespace": ns},
         "stringData": {"password": "rotated"}},
        field_manager="test",
    )  # fmt: skip
    wait_for(
        lambda: _hash(_deployment(kube, ns, "beta-metrics-worker")) != metrics_before,
        30,
        "the metrics worker's hash to follow the Secret",
    )

    # edited by hand: the declared replicas come back
    kube.request(
        "PATCH",
        kube.path("apps/v1", "Deployment", ns, "beta-log-worker"),
        body={"spec": {"replicas": 7}},
        content_type="application/merge-patch+json",
    )
    wait_for(
        lambda: (_deployment(kube, ns, "beta-log-worker") or {})["spec"]["replicas"] == 3,
        30,
        "the replicas to be restored",
    )
    # deleted by hand: recreated
    old_uid = (_deployment(kube, ns, "beta-receiver") or {})["metadata"]["uid"]
    kube.delete("apps/v1", "Deployment", "beta-receiver", ns)
    wait_for(
        lambda: (
            (d := _deployment(kube, ns, "beta-receiver")) is not None
            and d["metadata"]["uid"] != old_uid
        ),
        30,
        "the receiver Deployment to be recreated",
    )
    kube.delete("v1", "Service", "beta-syslog", ns)
    wait_for(lambda: kube.get("v1", "Service", "beta-syslog", ns), 30, "the Service back")


def test_a_missing_secret_is_degraded_naming_it_until_it_exists(
    operator: Any, kube: KubeClient, kube_namespace: str, pipeline_spec: dict[str, Any],
    apply_pipeline: Any,
) -> None:  # fmt: skip
    ns = kube_namespace
    spec = {
        **pipeline_spec,
        "elasticsearch": {**pipeline_spec["elasticsearch"],
                          "secretRef": {"name": "es-key", "key": "api-key"}},
    }  # fmt: skip
    apply_pipeline("gamma", spec)
    degraded = wait_for(
        pipeline_status_says(
            kube, ns, "gamma",
            lambda p: (condition(p, "Degraded") or {}).get("status") == "True",
        ),
        60,
        "Degraded",
    )  # fmt: skip
    cond = condition(degraded, "Degraded")
    assert cond is not None and cond["reason"] == "SecretMissing"
    assert f"Secret {ns}/es-key does not exist" in cond["message"]
    wait_for(
        lambda: [
            e for e in kube.list("v1", "Event", ns)
            if e["reason"] == "SecretMissing" and e["type"] == "Warning"
            and e["involvedObject"]["name"] == "gamma" and "es-key" in e["message"]
        ],
        30,
        "a Warning event naming the Secret",
    )  # fmt: skip
    assert _deployment(kube, ns, "gamma-log-worker") is None  # nothing applied meanwhile

    kube.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "es-key", "namespace": ns},
         "stringData": {"api-key": "id:key"}},
        field_manager="test",
    )  # fmt: skip
    wait_for(
        pipeline_status_says(
            kube, ns, "gamma",
            lambda p: (condition(p, "Degraded") or {}).get("status") == "False",
        ),
        60,
        "Degraded to clear",
    )  # fmt: skip
    assert _deployment(kube, ns, "gamma-log-worker") is not None


def test_deleting_the_pipeline_garbage_collects_its_objects(
    operator: Any, kube: KubeClient, kube_namespace: str, pipeline_spec: dict[str, Any],
    apply_pipeline: Any,
) -> None:  # fmt: skip
    ns = kube_namespace
    apply_pipeline("delta", pipeline_spec)
    wait_for(lambda: _deployment(kube, ns, "delta-metrics-worker"), 60, "the objects")
    kube.delete(API, "Pipeline", "delta", ns)
    wait_gone(
        kube,
        [
            ("apps/v1", "Deployment", "delta-receiver", ns),
            ("apps/v1", "Deployment", "delta-log-worker", ns),
            ("apps/v1", "Deployment", "delta-metrics-worker", ns),
            ("v1", "Service", "delta-receiver", ns),
            ("v1", "Service", "delta-syslog", ns),
            ("v1", "ConfigMap", "delta-config", ns),
        ],
        60,
    )


def test_a_pipeline_whose_namespace_is_deleted_is_not_reconciled_any_more(
    operator: Any, kube: KubeClient, kube_namespace: str, pipeline_spec: dict[str, Any],
    apply_pipeline: Any,
) -> None:  # fmt: skip
    """kopf never sees the Pipeline of a deleted namespace go (the namespace's watch ends
    first): its timer must stop reconciling it (it reconciled, and failed, every minute)."""
    ns = kube_namespace
    apply_pipeline("epsilon", pipeline_spec)
    wait_for(lambda: _deployment(kube, ns, "epsilon-log-worker"), 60, "the objects")
    kube.delete("v1", "Namespace", ns)
    wait_for(lambda: kube.get("v1", "Namespace", ns) is None, 120, "the namespace to go")

    def mine(line: dict[str, Any]) -> bool:
        return line.get("k8s_ref", {}).get("namespace") == ns or line.get("namespace") == ns

    gone = wait_for(
        lambda: [
            line for line in operator.log_lines()
            if mine(line) and GONE in line.get("msg", "")
        ],
        30,
        "the timer to find the Pipeline gone",
    )  # fmt: skip
    assert gone
    since = len(operator.log_lines())
    time.sleep(5)  # five timer intervals
    later = [line for line in operator.log_lines()[since:] if mine(line)]
    assert not later, later
