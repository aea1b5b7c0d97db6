"""The ``pipelines.killkrill.io`` CustomResourceDefinition, generated from the models.

The spec's schema is :class:`~killkrill.config.pipeline.PipelineSpec`'s JSON schema, the
status's :class:`~killkrill.config.status.PipelineStatus`'s, turned into the structural
OpenAPI v3 schema Kubernetes wants (:func:`structural`): references inlined, ``null``
alternatives as ``nullable``, numeric exclusive bounds in the v3.0 form, titles dropped,
every object field with a default of its own defaulted to ``{}`` so the API server fills
in the nested defaults. The CEL rules (``x-kubernetes-validations``) come from the models
too, beside the pydantic validators they mirror. ``make crds`` writes
``crds/pipelines.killkrill.io.yaml`` and the Helm chart's copy
(``charts/killkrill/files/crds/``); a test fails when either differs.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from killkrill.config.pipeline import (
    GROUP,
    KIND,
    NAME_RULE,
    PLURAL,
    SHORT_NAME,
    VERSION,
    PipelineSpec,
)
from killkrill.config.status import PipelineStatus

__all__ = ["CRD_NAME", "crd", "crd_yaml", "structural"]

CRD_NAME = f"{PLURAL}.{GROUP}"

_DROP = ("title",)


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema as a Kubernetes structural schema (see the module doc)."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        ref = node.pop("$ref", None)
        if ref is not None:
            target = resolve(copy.deepcopy(defs[ref.rsplit("/", 1)[-1]]))
            node = {**target, **{k: v for k, v in node.items() if k != "description"}} | (
                {"description": node["description"]} if "description" in node else {}
            )
        for key in _DROP:
            node.pop(key, None)
        any_of = node.pop("anyOf", None)
        if any_of is not None:
            others = [alt for alt in any_of if alt != {"type": "null"}]
            if len(others) != 1:
                raise ValueError(f"cannot express anyOf {any_of} structurally")
            merged = resolve(others[0])
            node = {**merged, **node}
            if len(others) < len(any_of):
                node["nullable"] = True
        if "const" in node:
            node["enum"] = [node.pop("const")]
        for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
                node[plain] = node.pop(bound)
                node[bound] = True
        if "properties" in node:
            props = {name: resolve(value) for name, value in node["properties"].items()}
            required = set(node.get("required", ()))
            for name, prop in props.items():
                if "default" in prop and prop["default"] is None:
                    del prop["default"]  # absent is null; a null default is refused
                if (
                    prop.get("type") == "object"
                    and "properties" in prop
                    and not prop.get("nullable")
                    and name not in required
                ):
                    prop.setdefault("default", {})
            node["properties"] = props
            node.setdefault("type", "object")
        if "additionalProperties" in node:
            extra = node["additionalProperties"]
            if extra is False or extra is True:
                del node["additionalProperties"]  # unknown fields are refused by validation
            else:
                node["additionalProperties"] = resolve(extra)
        if "items" in node:
            node["items"] = resolve(node["items"])
        return node

    out: dict[str, Any] = resolve({k: v for k, v in schema.items() if k != "$defs"})
    return out


def _condition_rules(schema: dict[str, Any]) -> dict[str, Any]:
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition, as data."""
    spec = structural(PipelineSpec.model_json_schema(by_alias=True))
    spec["description"] = "What the pipeline is made of; every field has a default."
    status = _condition_rules(structural(PipelineStatus.model_json_schema(by_alias=True)))
    status["description"] = "Written by the operator."
    root = {
        "type": "object",
        "description": "A KillKrill log and metrics pipeline: receivers, Redis Streams, "
        "workers, Elasticsearch and PostgreSQL sinks.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {**spec, "default": {}},
            "status": status,
        },
        "x-kubernetes-validations": [NAME_RULE],
    }
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/part-of": "killkrill"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": [SHORT_NAME],
                "categories": ["killkrill", "all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.logWorker.replicas",
                            "statusReplicasPath": ".status.logWorkerReplicas",
                            "labelSelectorPath": ".status.logWorkerSelector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Ready", "type": "string", "jsonPath": ready},
                        {"name": "Health", "type": "string", "jsonPath": ".status.health.verdict"},
                        {"name": "Lag", "type": "integer", "jsonPath": ".status.health.lag"},
                        {
                            "name": "DLQ",
                            "type": "integer",
                            "jsonPath": ".status.health.deadLetters",
                        },
                        {"name": "Receivers", "type": "string", "jsonPath": ".status.receivers"},
                        {"name": "Workers", "type": "string", "jsonPath": ".status.workers"},
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                }
            ],
        },
    }


def crd_yaml() -> str:
    """The CRD as the YAML file ``crds/`` holds (stable order, a header saying its source)."""
    header = (
        "# Generated by `make crds` from killkrill/config/pipeline.py and status.py: do not\n"
        "# edit; change the models and run `make crds` (a test compares this file).\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> None:
    """``python -m killkrill.config.crd [FILE]...``: write the CRD YAML to each FILE (the
    repository's ``crds/`` and the Helm chart's copy), or to stdout."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    text = crd_yaml()
    for path in args:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    if not args:
        sys.stdout.write(text)


if __name__ == "__main__":  # pragma: no cover
    main()
