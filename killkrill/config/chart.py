"""The parts of the Helm chart (``charts/killkrill``) generated from the models.

The chart's ``values.schema.json`` is written by hand, except its ``$defs``: the JSON schema
of :class:`~killkrill.config.pipeline.PipelineSpec` (camelCase, unknown keys refused, every
bound and pattern of the model), which ``pipeline.spec`` references. So a misspelt or
mistyped key of the example Pipeline fails ``helm lint``/``install`` like any other value,
before the API server sees it (the CEL rules stay the API server's). ``make crds`` rewrites
the ``$defs`` (:func:`main`); a unit test fails when they differ from the model.
"""

from __future__ import annotations

import json
from typing import Any

from killkrill.config.pipeline import PipelineSpec

__all__ = ["SPEC_DEF", "pipeline_spec_defs", "values_schema", "values_schema_text"]

SPEC_DEF = "PipelineSpec"
"""The name under ``$defs`` that ``pipeline.spec`` references."""


def pipeline_spec_defs() -> dict[str, Any]:
    """``PipelineSpec``'s JSON schema as ``$defs`` entries (its own included)."""
    schema = PipelineSpec.model_json_schema(by_alias=True, ref_template="#/$defs/{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})
    schema["description"] = (
        "The example Pipeline's spec (killkrill.io/v1alpha1): every field has a default."
    )
    return {SPEC_DEF: schema, **dict(sorted(defs.items()))}


def values_schema(written: dict[str, Any]) -> dict[str, Any]:
    """``written`` (the chart's schema) with its ``$defs`` generated from the model."""
    return {**{k: v for k, v in written.items() if k != "$defs"}, "$defs": pipeline_spec_defs()}


def values_schema_text(written: dict[str, Any]) -> str:
    """:func:`values_schema` as the file holds it (2-space JSON, a final newline)."""
    return json.dumps(values_schema(written), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m killkrill.config.chart SCHEMA``: rewrite the ``$defs`` of SCHEMA."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit(
            "usage: python -m killkrill.config.chart charts/killkrill/values.schema.json"
        )
    with open(args[0], encoding="utf-8") as f:
        written = json.load(f)
    text = values_schema_text(written)
    with open(args[0], "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":  # pragma: no cover
    main()
