"""The CRD is generated from the models, and the checked-in file is exactly that."""

from __future__ import annotations

from pathlib import Path

import yaml

from killkrill.config.crd import crd, crd_yaml

CRD_FILE = Path(__file__).resolve().parents[3] / "crds" / "pipelines.killkrill.io.yaml"


def test_the_checked_in_crd_is_the_generated_one() -> None:
    assert CRD_FILE.read_text(encoding="utf-8") == crd_yaml(), (
        "crds/pipelines.killkrill.io.yaml differs from the Pipeline model: run `make crds`"
    )


def _walk(node: object) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        found.append(node)
        for value in node.values():
            found.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_walk(value))
    return found


def test_the_schema_is_structural() -> None:
    [version] = crd()["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    nodes = _walk(schema)
    for forbidden in ("$ref", "anyOf", "const", "title", "$defs"):
        assert not [n for n in nodes if forbidden in n], forbidden
    for node in nodes:
        if "pattern" in node:
            assert str(node["pattern"]).startswith("^") and str(node["pattern"]).endswith("$")
        assert node.get("default", 0) is not None  # no null defaults
    spec = schema["properties"]["spec"]
    autoscaling = spec["properties"]["logWorker"]["properties"]["autoscaling"]
    assert autoscaling["x-kubernetes-validations"][0]["message"] == (
        "maxReplicas must be >= minReplicas"
    )
    assert spec["properties"]["logWorker"]["properties"]["batchSize"]["default"] == 500
    assert spec["properties"]["redis"]["default"] == {}


def test_names_subresources_and_columns() -> None:
    doc = yaml.safe_load(crd_yaml())
    assert doc["metadata"]["name"] == "pipelines.killkrill.io"
    assert doc["spec"]["names"]["shortNames"] == ["kkp"]
    [version] = doc["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.logWorker.replicas"
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Health", "Lag", "DLQ", "Receivers", "Workers", "Age"]
