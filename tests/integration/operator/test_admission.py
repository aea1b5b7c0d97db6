"""Bad specs are refused by the API server at ``kubectl apply`` (the built kubectl), with the
schema's or the CEL rule's message - before any operator sees them."""

from __future__ import annotations

import json

import pytest
from kube_cluster import KubeEnv


def _pipeline(namespace: str, spec: dict[str, object], name: str = "bad") -> str:
    return json.dumps(
        {
            "apiVersion": "killkrill.io/v1alpha1",
            "kind": "Pipeline",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"logWorker": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
            "maxReplicas must be >= minReplicas",
        ),
        (
            {"receivers": {"syslog": {"tls": {"enabled": True}}}},
            "tls.secretRef is required when tls.enabled is true",
        ),
        (
            {"redis": {"url": "redis://:hunter2@redis:6379/0"}},
            "url must not hold a password",
        ),
        (
            {"elasticsearch": {"username": "writer"}},
            "username needs secretRef",
        ),
        ({"logWorker": {"batchSize": 0}}, "spec.logWorker.batchSize"),
        ({"receivers": {"http": {"serviceType": "Ingress"}}}, "Unsupported value"),
        ({"streams": {"logs": "metrics"}}, "a stream name is used twice"),
        ({"metrics": {"bucketSeconds": "a minute"}}, "spec.metrics.bucketSeconds"),
        ({"nonsense": 1}, 'unknown field "spec.nonsense"'),
    ],
)
def test_kubectl_apply_of_a_bad_spec_is_refused_with_the_reason(
    kube_env: KubeEnv, crds: None, kube_namespace: str, spec: dict[str, object], message: str
) -> None:
    done = kube_env.kubectl("apply", "-f", "-", input=_pipeline(kube_namespace, spec))
    assert done.returncode != 0
    assert message in done.stderr, done.stderr


def test_a_bad_name_is_refused(kube_env: KubeEnv, crds: None, kube_namespace: str) -> None:
    done = kube_env.kubectl(
        "apply", "-f", "-", input=_pipeline(kube_namespace, {}, name="9-starts-with-a-digit")
    )
    assert done.returncode != 0
    assert "starting with a letter" in done.stderr, done.stderr


def test_an_empty_spec_is_valid_and_defaulted(
    kube_env: KubeEnv, crds: None, kube_namespace: str
) -> None:
    done = kube_env.kubectl(
        "apply", "--dry-run=server", "-o", "json", "-f", "-",
        input=_pipeline(kube_namespace, {}, name="empty"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)["spec"]
    assert spec["logWorker"]["batchSize"] == 500
    assert spec["streams"] == {"logs": "logs", "metrics": "metrics", "partitions": 1}
    assert spec["receivers"]["http"]["auth"]["enabled"] is True
