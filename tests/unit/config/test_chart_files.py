"""The Helm chart carries exactly what the models generate: the Pipeline CRD, kopf's peering
CRDs (both as ``crds/`` has them) and the values schema's ``$defs``; its appVersion is the
package's version. `make crds` rewrites all of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from killkrill import __version__
from killkrill.config.chart import SPEC_DEF, values_schema, values_schema_text
from killkrill.config.crd import crd_yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "killkrill"


@pytest.mark.parametrize(
    ("chart_copy", "source"),
    [
        ("files/crds/pipelines.killkrill.io.yaml", "crds/pipelines.killkrill.io.yaml"),
        ("crds/kopf-peering.yaml", "crds/kopf-peering.yaml"),
    ],
)
def test_the_chart_carries_the_crds_byte_for_byte(chart_copy: str, source: str) -> None:
    assert (CHART / chart_copy).read_bytes() == (REPO / source).read_bytes(), (
        f"charts/killkrill/{chart_copy} differs from {source}: run `make crds`"
    )


def test_the_chart_crd_is_the_generated_one() -> None:
    assert (CHART / "files/crds/pipelines.killkrill.io.yaml").read_text() == crd_yaml()


def test_the_values_schema_defs_are_the_models() -> None:
    text = (CHART / "values.schema.json").read_text(encoding="utf-8")
    assert text == values_schema_text(json.loads(text)), (
        "charts/killkrill/values.schema.json's $defs differ from the Pipeline model: run "
        "`make crds`"
    )


def test_the_values_schema_is_strict_everywhere() -> None:
    schema = values_schema(json.loads((CHART / "values.schema.json").read_text()))
    spec = schema["properties"]["pipeline"]["properties"]["spec"]
    assert spec == {"$ref": f"#/$defs/{SPEC_DEF}"}
    open_maps = 0

    def walk(node: object, where: str) -> None:
        nonlocal open_maps
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            if isinstance(node.get("additionalProperties"), dict):
                open_maps += 1  # labels, annotations, resources: typed values
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema, "")
    assert open_maps > 0


_DEFAULT_BLOCKS = ("operator.resources", "operator.livenessProbe", "operator.readinessProbe")
"""Keys whose comment documents the block of defaults under them."""


def test_every_value_is_in_the_schema_and_documented() -> None:
    """values.yaml: every key a property of the schema, with a comment right above it."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(data: dict[str, object], node: dict[str, object], where: str) -> None:
        props = node.get("properties")
        assert isinstance(props, dict), where
        for key, value in data.items():
            assert key in props, f"{where}.{key} is not in values.schema.json"
            sub = props[key]
            if isinstance(value, dict) and value and isinstance(sub, dict) and "properties" in sub:
                walk(value, sub, f"{where}.{key}")

    walk(values, schema, "")
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key) of the keys enclosing a line
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "-")) or ":" not in stripped:
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [stripped.split(":", 1)[0]])
        stack.append((indent, stripped.split(":", 1)[0]))
        if any(path.startswith(block + ".") for block in _DEFAULT_BLOCKS):
            continue
        assert lines[i - 1].strip().startswith("#"), f"values.yaml: {path} has no comment"


def test_the_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == __version__
