"""render(): spec in, objects out (pure)."""

from __future__ import annotations

from typing import Any

import yaml

from killkrill.config.pipeline import parse_pipeline
from killkrill.operator.render import CONFIG_HASH, render


def _pipeline(spec: dict[str, Any] | None = None, name: str = "p") -> Any:
    return parse_pipeline({"kind": "Pipeline", "metadata": {"name": name}, "spec": spec or {}})


def _names(rendered: Any) -> list[str]:
    return sorted(f"{o['kind']}/{o['metadata']['name']}" for o in rendered.objects)


def test_a_default_pipeline_renders_every_object() -> None:
    rendered = render(_pipeline(), namespace="ns")
    assert _names(rendered) == [
        "ConfigMap/p-config",
        "Deployment/p-log-worker",
        "Deployment/p-metrics-worker",
        "Deployment/p-receiver",
        "PodDisruptionBudget/p-log-worker",
        "PodDisruptionBudget/p-metrics-worker",
        "PodDisruptionBudget/p-receiver",
        "Service/p-receiver",
        "Service/p-syslog",
        "ServiceAccount/p-killkrill",
    ]
    assert all(o["metadata"]["namespace"] == "ns" for o in rendered.objects)
    assert rendered.secrets == {}


def test_pods_meet_the_restricted_standard_and_probe_the_ops_port() -> None:
    for d in (o for o in render(_pipeline(), namespace="ns").objects if o["kind"] == "Deployment"):
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        [c] = pod["containers"]
        assert c["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }
        ops = next(p["containerPort"] for p in c["ports"] if p["name"] == "ops")
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": ops}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": ops}
        assert c["args"][-2:] == ["--config", "/etc/killkrill/config.yaml"]
        assert {m["mountPath"] for m in c["volumeMounts"]} >= {"/etc/killkrill", "/tmp"}


def test_secrets_are_mounted_where_the_config_reads_them_and_never_copied() -> None:
    spec = {
        "redis": {"secretRef": {"name": "redis-cred", "key": "password"}},
        "elasticsearch": {"secretRef": {"name": "es-key", "key": "api-key"}},
        "postgres": {"secretRef": {"name": "pg", "key": "pw"}},
    }
    rendered = render(_pipeline(spec), namespace="ns")
    assert rendered.secrets == {"redis-cred": ["password"], "pg": ["pw"], "es-key": ["api-key"]}
    config = yaml.safe_load(rendered.get("ConfigMap", "p-config")["data"]["config.yaml"])
    assert config["log_worker"]["redis"]["password_file"] == (
        "/var/run/secrets/killkrill/redis-cred/password"
    )
    log = rendered.get("Deployment", "p-log-worker")["spec"]["template"]["spec"]
    mounted = {v["secret"]["secretName"] for v in log["volumes"] if "secret" in v}
    assert mounted == {"redis-cred", "es-key"}  # not the PostgreSQL one
    [c] = log["containers"]
    assert "/var/run/secrets/killkrill/es-key" in {m["mountPath"] for m in c["volumeMounts"]}


def test_the_config_hash_follows_the_config_and_each_mounted_secret() -> None:
    spec = {"postgres": {"secretRef": {"name": "pg", "key": "pw"}}}

    def hashes(spec: dict[str, Any], versions: dict[str, str]) -> dict[str, str]:
        rendered = render(_pipeline(spec), namespace="ns", secret_versions=versions)
        return {
            o["metadata"]["name"]: o["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
            for o in rendered.objects
            if o["kind"] == "Deployment"
        }

    base = hashes(spec, {"pg": "1"})
    rotated = hashes(spec, {"pg": "2"})
    assert rotated["p-metrics-worker"] != base["p-metrics-worker"]
    assert rotated["p-log-worker"] == base["p-log-worker"]  # does not mount it
    changed = hashes({**spec, "logWorker": {"batchSize": 99}}, {"pg": "1"})
    assert changed["p-log-worker"] != base["p-log-worker"]


def test_replicas_from_the_spec_the_autoscaler_or_left_to_an_hpa() -> None:
    spec = {"logWorker": {"replicas": 3}, "metricsWorker": {"autoscaling": {"external": True}}}
    rendered = render(_pipeline(spec), namespace="ns")
    assert rendered.get("Deployment", "p-log-worker")["spec"]["replicas"] == 3
    assert "replicas" not in rendered.get("Deployment", "p-metrics-worker")["spec"]
    decided = render(_pipeline(spec), namespace="ns", replicas={"log-worker": 5})
    assert decided.get("Deployment", "p-log-worker")["spec"]["replicas"] == 5


def test_disabled_receivers_have_no_service_and_syslog_ports_follow_the_spec() -> None:
    no_syslog = render(_pipeline({"receivers": {"syslog": {"enabled": False}}}), namespace="n")
    assert "Service/p-syslog" not in _names(no_syslog)
    nothing = {"receivers": {"syslog": {"enabled": False}, "http": {"enabled": False}}}
    assert not [n for n in _names(render(_pipeline(nothing), namespace="n")) if "receiver" in n]
    tls = {
        "receivers": {
            "syslog": {
                "udpPort": None,
                "tcpPort": 1514,
                "tls": {"enabled": True, "port": 6514, "secretRef": {"name": "tls"}},
            }
        }
    }
    rendered = render(_pipeline(tls), namespace="n")
    ports = rendered.get("Service", "p-syslog")["spec"]["ports"]
    assert [(p["name"], p["port"], p["protocol"]) for p in ports] == [
        ("syslog-tcp", 1514, "TCP"),
        ("syslog-tls", 6514, "TCP"),
    ]
    assert rendered.secrets == {"tls": ["tls.crt", "tls.key"]}


def test_metrics_worker_pods_migrate_the_schema_first_with_their_own_config() -> None:
    """Nothing else migrates the database in a cluster, and the metrics worker refuses an
    unmigrated one: its pods run `killkrill db upgrade --config` first (found in kind)."""
    spec = {"postgres": {"secretRef": {"name": "pg", "key": "pw"}}}
    rendered = render(_pipeline(spec), namespace="ns")
    pod = rendered.get("Deployment", "p-metrics-worker")["spec"]["template"]["spec"]
    [worker] = pod["containers"]
    [init] = pod["initContainers"]
    assert init["args"] == ["db", "upgrade", "--config", "/etc/killkrill/config.yaml"]
    assert init["image"] == worker["image"]
    assert init["volumeMounts"] == worker["volumeMounts"]  # the config and the pg Secret
    assert init["securityContext"] == worker["securityContext"]
    for other in ("p-receiver", "p-log-worker"):
        assert "initContainers" not in rendered.get("Deployment", other)["spec"]["template"]["spec"]
