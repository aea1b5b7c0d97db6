"""``Pipeline`` -> the Kubernetes objects that run it. Pure: no API calls, no clock.

For a pipeline ``<p>`` in its namespace:

* ServiceAccount ``<p>-killkrill`` (no API token mounted: the pods never call the API);
* ConfigMap ``<p>-config``: ``config.yaml``, every process's settings derived from the spec
  (:func:`~killkrill.config.pipeline.component_settings`), credentials as file paths only;
* Deployments ``<p>-receiver`` (HTTP API, remote_write, syslog), ``<p>-log-worker``,
  ``<p>-metrics-worker``: one image, pods meeting the ``restricted`` Pod Security Standard,
  probes on the ops port's ``/healthz`` and ``/readyz``, each referenced Secret mounted
  read-only at ``/var/run/secrets/killkrill/<secret>/``, and a pod-template annotation
  ``killkrill.io/config-hash`` over the config and the ``resourceVersion`` of every Secret
  the component mounts, so a change of either rolls its pods;
* Services ``<p>-receiver`` (HTTP) and ``<p>-syslog`` (UDP, TCP, TLS), when enabled;
* a PodDisruptionBudget per Deployment (at most one pod down at a time).

Labels: ``app.kubernetes.io/{name,instance,component,part-of,managed-by}``. Owner
references are added when applying (:mod:`killkrill.operator.apply`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from killkrill.config.pipeline import (
    SECRETS_ROOT,
    ComponentSettings,
    Pipeline,
    ResourcesSpec,
    SecretKeyRef,
    SecretRef,
    component_settings,
)

__all__ = [
    "CONFIG_HASH",
    "CONFIG_PATH",
    "FIELD_MANAGER",
    "LOG_WORKER",
    "MANAGED_BY",
    "METRICS_WORKER",
    "OPS_PORTS",
    "RECEIVER",
    "Rendered",
    "component_labels",
    "labels",
    "object_name",
    "render",
    "secret_names",
]

MANAGED_BY = "killkrill-operator"
FIELD_MANAGER = "killkrill-operator"
CONFIG_HASH = "killkrill.io/config-hash"
CONFIG_DIR = "/etc/killkrill"
CONFIG_PATH = f"{CONFIG_DIR}/config.yaml"
RECEIVER, LOG_WORKER, METRICS_WORKER = "receiver", "log-worker", "metrics-worker"
OPS_PORTS = {RECEIVER: 9140, LOG_WORKER: 9102, METRICS_WORKER: 9103}
"""The ops port (``/healthz``, ``/readyz``, ``/metrics``) of each component's pods."""
_RECEIVER_RESOURCES = ResourcesSpec()
_GRACE_SECONDS = 30
"""Pods' terminationGracePeriodSeconds: above the workers' stop_timeout and the syslog
drain_timeout (20 s each), so a stopping pod finishes its work before it is killed."""


def object_name(pipeline: str, component: str) -> str:
    """``<pipeline>-<component>``: the name of a Deployment, Service or PDB."""
    return f"{pipeline}-{component}"


def labels(pipeline: str) -> dict[str, str]:
    """The labels every object of ``pipeline`` carries."""
    return {
        "app.kubernetes.io/name": "killkrill",
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/part-of": "killkrill",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def component_labels(pipeline: str, component: str) -> dict[str, str]:
    return {**labels(pipeline), "app.kubernetes.io/component": component}


def _selector(pipeline: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "killkrill",
        "app.kubernetes.io/instance": pipeline,
        "app.kubernetes.io/component": component,
    }


@dataclass(frozen=True)
class Rendered:
    """The objects of one pipeline, and what the operator needs to know about them."""

    objects: list[dict[str, Any]]
    secrets: dict[str, list[str]] = field(default_factory=dict)
    """Secret name -> the keys the pipeline reads from it (checked before applying)."""

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"{kind}/{name}")


def secret_names(pipeline: Pipeline) -> dict[str, list[str]]:
    """Every Secret the spec references, with the keys it reads from each."""
    spec = pipeline.spec
    wanted: dict[str, list[str]] = {}

    def add(ref: SecretKeyRef | SecretRef | None, *keys: str) -> None:
        if ref is None:
            return
        got = [ref.key] if isinstance(ref, SecretKeyRef) else list(keys)
        wanted.setdefault(ref.name, [])
        wanted[ref.name] += [k for k in got if k not in wanted[ref.name]]

    es, http = spec.elasticsearch, spec.receivers.http
    add(spec.redis.secret_ref)
    add(spec.postgres.secret_ref)
    add(es.secret_ref)
    add(es.ca_secret_ref)
    add(http.auth.secret_ref)
    if spec.receivers.syslog.tls.enabled:
        add(spec.receivers.syslog.tls.secret_ref, "tls.crt", "tls.key")
    return wanted


def _component_secrets(pipeline: Pipeline) -> dict[str, list[str]]:
    """Component -> the Secrets its pods mount."""
    spec = pipeline.spec
    es, http, syslog = spec.elasticsearch, spec.receivers.http, spec.receivers.syslog
    redis = [spec.redis.secret_ref.name] if spec.redis.secret_ref else []
    receiver = [
        *redis,
        *([http.auth.secret_ref.name] if http.auth.secret_ref else []),
        *([syslog.tls.secret_ref.name] if syslog.tls.enabled and syslog.tls.secret_ref else []),
    ]
    log = [*redis, *(r.name for r in (es.secret_ref, es.ca_secret_ref) if r is not None)]
    metrics = [*redis, *([spec.postgres.secret_ref.name] if spec.postgres.secret_ref else [])]
    return {
        RECEIVER: sorted(set(receiver)),
        LOG_WORKER: sorted(set(log)),
        METRICS_WORKER: sorted(set(metrics)),
    }


def config_yaml(settings: ComponentSettings) -> str:
    """``config.yaml`` of the ConfigMap: every process's settings; the ops ports fixed."""
    doc = settings.config_document()
    for section, component in (
        ("receivers", RECEIVER),
        ("log_worker", LOG_WORKER),
        ("metrics_worker", METRICS_WORKER),
    ):
        doc[section]["ops"] = {"host": "0.0.0.0", "port": OPS_PORTS[component]}
    doc["receivers"].setdefault("http", {})["expose_docs_and_metrics"] = False
    return yaml.safe_dump(doc, sort_keys=True)


def _hash(config: str, secrets: list[str], versions: Mapping[str, str]) -> str:
    digest = hashlib.sha256(config.encode())
    for name in secrets:
        digest.update(f"\0{name}={versions.get(name, '')}".encode())
    return digest.hexdigest()[:16]


def render(
    pipeline: Pipeline,
    *,
    namespace: str,
    secret_versions: Mapping[str, str] | None = None,
    replicas: Mapping[str, int | None] | None = None,
) -> Rendered:
    """Every object of ``pipeline`` in ``namespace``.

    ``secret_versions`` maps each referenced Secret to its ``resourceVersion`` (part of the
    config hash). ``replicas`` overrides a worker's replicas (the built-in autoscaler's
    decision) or, as ``None``, leaves them out (an HPA or KEDA owns them)."""
    name, spec = pipeline.name, pipeline.spec
    versions = dict(secret_versions or {})
    settings = component_settings(pipeline, secrets_dir=SECRETS_ROOT)
    config = config_yaml(settings)
    mounts = _component_secrets(pipeline)
    meta = _meta(name, namespace)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": meta(f"{name}-killkrill", "config"),
            "automountServiceAccountToken": False,
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta(f"{name}-config", "config"),
            "data": {"config.yaml": config},
        },
    ]
    http, syslog = spec.receivers.http, spec.receivers.syslog
    serving = [k for k, on in (("http", http.enabled), ("syslog", syslog.enabled)) if on]
    wanted_replicas = dict(replicas or {})
    if serving:
        ports = _receiver_ports(pipeline)
        objects.append(
            _deployment(
                pipeline,
                namespace,
                RECEIVER,
                ["receiver", "all" if len(serving) == 2 else serving[0]],
                http.replicas,
                _RECEIVER_RESOURCES,
                ports,
                mounts[RECEIVER],
                _hash(config, mounts[RECEIVER], versions),
            )
        )
        if http.enabled:
            objects.append(
                _service(
                    name,
                    namespace,
                    RECEIVER,
                    object_name(name, RECEIVER),
                    http.service_type,
                    [p for p in ports if p["name"] == "http"],
                )
            )
        syslog_ports = [p for p in ports if p["name"].startswith("syslog")]
        if syslog.enabled and syslog_ports:
            objects.append(
                _service(
                    name,
                    namespace,
                    RECEIVER,
                    object_name(name, "syslog"),
                    http.service_type,
                    syslog_ports,
                )
            )
        objects.append(_pdb(name, namespace, RECEIVER))
    for component, worker, command in (
        (LOG_WORKER, spec.log_worker, ["worker", "logs"]),
        (METRICS_WORKER, spec.metrics_worker, ["worker", "metrics"]),
    ):
        count: int | None = worker.replicas
        if component in wanted_replicas:
            count = wanted_replicas[component]
        elif worker.autoscaling.external:
            count = None
        objects.append(
            _deployment(
                pipeline,
                namespace,
                component,
                command,
                count,
                worker.resources,
                [_port("ops", OPS_PORTS[component], "TCP")],
                mounts[component],
                _hash(config, mounts[component], versions),
                # The schema the metrics worker refuses to start without, migrated first
                # (idempotent; replicas take turns): nothing else migrates it in a cluster.
                migrate=component == METRICS_WORKER,
            )
        )
        objects.append(_pdb(name, namespace, component))
    return Rendered(objects, secret_names(pipeline))


def _meta(pipeline: str, namespace: str) -> Callable[[str, str], dict[str, Any]]:
    def meta(name: str, component: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": namespace,
            "labels": component_labels(pipeline, component),
        }

    return meta


def _port(name: str, port: int, protocol: str) -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": protocol}


def _receiver_ports(pipeline: Pipeline) -> list[dict[str, Any]]:
    http, syslog = pipeline.spec.receivers.http, pipeline.spec.receivers.syslog
    ports = [_port("ops", OPS_PORTS[RECEIVER], "TCP")]
    if http.enabled:
        ports.append(_port("http", http.port, "TCP"))
    if syslog.enabled:
        if syslog.udp_port is not None:
            ports.append(_port("syslog-udp", syslog.udp_port, "UDP"))
        if syslog.tcp_port is not None:
            ports.append(_port("syslog-tcp", syslog.tcp_port, "TCP"))
        if syslog.tls.enabled:
            ports.append(_port("syslog-tls", syslog.tls.port, "TCP"))
    return ports


def _deployment(
    pipeline: Pipeline,
    namespace: str,
    component: str,
    command: list[str],
    replicas: int | None,
    resources: ResourcesSpec,
    ports: list[dict[str, Any]],
    secrets: list[str],
    config_hash: str,
    *,
    migrate: bool = False,
) -> dict[str, Any]:
    name, image = pipeline.name, pipeline.spec.image
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{name}-config"}},
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    for i, secret in enumerate(secrets):
        volumes.append({"name": f"secret-{i}", "secret": {"secretName": secret}})
        mounts.append(
            {"name": f"secret-{i}", "mountPath": f"{SECRETS_ROOT}/{secret}", "readOnly": True}
        )
    ops = OPS_PORTS[component]

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": ops},
            "periodSeconds": period,
            "timeoutSeconds": 3,
            "failureThreshold": failures,
        }

    container: dict[str, Any] = {
        "name": component,
        "image": image.reference,
        "imagePullPolicy": image.pull_policy,
        "args": [*command, "--config", CONFIG_PATH],
        "ports": ports,
        # the pod's name names its consumer in the group (see default_consumer_name)
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"requests": resources.requests, "limits": resources.limits},
        "livenessProbe": probe("/healthz", 10, 3),
        "readinessProbe": probe("/readyz", 5, 2),
        "startupProbe": probe("/healthz", 2, 30),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": _selector(name, component)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "template": {
            "metadata": {
                "labels": component_labels(name, component),
                "annotations": {CONFIG_HASH: config_hash},
            },
            "spec": {
                "serviceAccountName": f"{name}-killkrill",
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": _GRACE_SECONDS,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 10001,
                    "runAsGroup": 10001,
                    "fsGroup": 10001,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                **({"initContainers": [_migrate(container)]} if migrate else {}),
                "containers": [container],
                "volumes": volumes,
            },
        },
    }
    if replicas is not None:
        deployment_spec = {"replicas": replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": object_name(name, component),
            "namespace": namespace,
            "labels": component_labels(name, component),
        },
        "spec": deployment_spec,
    }


def _migrate(container: Mapping[str, Any]) -> dict[str, Any]:
    """An init container of ``container``'s image, config and Secrets running ``killkrill db
    upgrade`` against the database of the metrics worker's settings."""
    return {
        "name": "migrate",
        "image": container["image"],
        "imagePullPolicy": container["imagePullPolicy"],
        "args": ["db", "upgrade", "--config", CONFIG_PATH],
        "resources": container["resources"],
        "volumeMounts": container["volumeMounts"],
        "securityContext": container["securityContext"],
    }


def _service(
    pipeline: str,
    namespace: str,
    component: str,
    name: str,
    service_type: str,
    ports: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": component_labels(pipeline, component),
        },
        "spec": {
            "type": service_type,
            "selector": _selector(pipeline, component),
            "ports": [
                {
                    "name": p["name"],
                    "port": p["containerPort"],
                    "targetPort": p["name"],
                    "protocol": p["protocol"],
                }
                for p in ports
            ],
        },
    }


def _pdb(pipeline: str, namespace: str, component: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": object_name(pipeline, component),
            "namespace": namespace,
            "labels": component_labels(pipeline, component),
        },
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(pipeline, component)}},
    }
