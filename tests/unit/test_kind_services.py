"""The service images' recipes and manifests (pure parts of killkrill.dev.kind.services):
the manifests name the images the builder tags, run every service restricted as uid 10001,
pass the PostgreSQL password only by Secret reference, and mirror the dev Elasticsearch."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from killkrill.cli.main import cli
from killkrill.dev.elasticsearch_server import VERSION, ElasticsearchServer
from killkrill.dev.kind import services
from killkrill.dev.kind.services import (
    ELASTICSEARCH_SETTINGS,
    SERVICE_UID,
    service_images,
    service_manifests,
)


def _by_kind(objects: list[dict[str, object]], kind: str) -> dict[str, dict[str, object]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}  # type: ignore[index]


def test_manifests_run_the_built_images_as_restricted_pods_behind_services() -> None:
    objects = service_manifests()
    deployments = _by_kind(objects, "Deployment")
    assert set(deployments) == {"redis", "postgres", "elasticsearch"}
    assert {n: s["spec"]["ports"][0]["port"] for n, s in _by_kind(objects, "Service").items()} == {  # type: ignore[index]
        "redis": 6379,
        "postgres": 5432,
        "elasticsearch": 9200,
    }
    images = {"redis": "killkrill/redis:7", "postgres": "killkrill/postgres:15"}
    images["elasticsearch"] = f"killkrill/elasticsearch:{VERSION}"
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]  # type: ignore[index]
        (container,) = pod["containers"]
        assert container["image"] == images[name]
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == SERVICE_UID
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/tmp"}
        assert "readinessProbe" in container


def test_the_postgres_password_is_only_referenced() -> None:
    trusting = _by_kind(service_manifests(), "Deployment")["postgres"]
    env = trusting["spec"]["template"]["spec"]["containers"][0]["env"]  # type: ignore[index]
    assert {e["name"] for e in env} == {"POSTGRES_USER", "POSTGRES_DB"}
    secured = service_manifests(postgres_password_secret=("pg", "password"))
    env = _by_kind(secured, "Deployment")["postgres"]["spec"]["template"]["spec"]["containers"][0][  # type: ignore[index]
        "env"
    ]
    (password,) = [e for e in env if e["name"] == "POSTGRES_PASSWORD"]
    assert password == {
        "name": "POSTGRES_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "pg", "key": "password"}},
    }


def test_elasticsearch_keeps_the_dev_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same settings as the dev Elasticsearch, but where a pod listens and keeps data."""
    with tempfile.TemporaryDirectory(dir="/tmp") as home:  # the service user's to enter
        monkeypatch.setenv("KILLKRILL_DEV_HOME", home)
        dev = ElasticsearchServer().settings()
    assert set(ELASTICSEARCH_SETTINGS) == set(dev)
    pod_own = {"network.host", "http.port", "transport.port", "path.data", "path.logs"}
    assert {k: v for k, v in ELASTICSEARCH_SETTINGS.items() if k not in pod_own} == {
        k: v for k, v in dev.items() if k not in pod_own
    }
    assert ELASTICSEARCH_SETTINGS["network.host"] == "0.0.0.0"
    for key, value in ELASTICSEARCH_SETTINGS.items():
        assert f"-E {key}={value}" in services.ELASTICSEARCH_ENTRYPOINT


def test_recipes_are_named_by_their_content(tmp_path: Path) -> None:
    jdk, dist = tmp_path / "jdk", tmp_path / "es"
    jdk.mkdir()
    dist.mkdir()
    (jdk / "release").write_text('JAVA_VERSION="25"\n')
    first = {i.name: i.exact("base:1") for i in service_images(es_distribution=dist, java_home=jdk)}
    assert set(first) == {"redis", "postgres", "elasticsearch"}
    assert first == {
        i.name: i.exact("base:1") for i in service_images(es_distribution=dist, java_home=jdk)
    }
    other_base = {
        i.name: i.exact("base:2") for i in service_images(es_distribution=dist, java_home=jdk)
    }
    assert all(first[n] != other_base[n] for n in first)
    (jdk / "release").write_text('JAVA_VERSION="26"\n')
    newer = {i.name: i.exact("base:1") for i in service_images(es_distribution=dist, java_home=jdk)}
    assert newer["redis"] == first["redis"]
    assert newer["elasticsearch"] != first["elasticsearch"]
    assert [i.name for i in service_images(java_home=None)] == ["redis", "postgres"]


def test_the_context_holds_the_trees_without_the_jdk_sources(tmp_path: Path) -> None:
    jdk, dist = tmp_path / "jdk", tmp_path / "es"
    (jdk / "lib").mkdir(parents=True)
    (jdk / "include").mkdir()
    (jdk / "bin").mkdir()
    (jdk / "release").write_text("x")
    (jdk / "lib/src.zip").write_text("sources")
    (jdk / "lib/modules").write_text("modules")
    (jdk / "include/jni.h").write_text("h")
    (jdk / "bin/java").write_text("#!")
    (jdk / "bin/java").chmod(0o700)
    (dist / "bin").mkdir(parents=True)
    (dist / "bin/elasticsearch").write_text("#!")
    (image,) = [
        i for i in service_images(es_distribution=dist, java_home=jdk) if i.name == "elasticsearch"
    ]
    out = io.BytesIO()
    services._context(image, "base:1", out)
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        dockerfile = tar.extractfile("Dockerfile").read().decode()  # type: ignore[union-attr]
    assert dockerfile.startswith("FROM base:1\n")
    assert "jdk/lib/modules" in members
    assert "jdk/lib/src.zip" not in members
    assert not any(n.startswith("jdk/include") for n in members)
    assert members["jdk/bin/java"].mode & 0o755 == 0o755  # readable and runnable by uid 10001
    assert members["jdk/bin/java"].uid == 0
    assert members["kk-elasticsearch"].mode == 0o755
    assert "elasticsearch/bin/elasticsearch" in members


def test_the_manifest_command_prints_yaml_for_kubectl() -> None:
    done = CliRunner().invoke(
        cli, ["dev", "kind", "services-manifest", "--postgres-password-secret", "pg/password"]
    )
    assert done.exit_code == 0, done.output
    kinds = [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(done.output)]
    assert ("Deployment", "elasticsearch") in kinds
    assert ("Service", "postgres") in kinds
    bad = CliRunner().invoke(
        cli, ["dev", "kind", "services-manifest", "--postgres-password-secret", "pg"]
    )
    assert bad.exit_code != 0
