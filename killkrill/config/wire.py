"""The base of every model that is part of a Kubernetes object (the ``Pipeline`` spec and
status): camelCase on the wire (Kubernetes' convention), snake_case in Python, both accepted
when loading; unknown keys refused; a value that fails validation never echoed (it may be a
credential)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

__all__ = ["Wire"]


class Wire(BaseModel):
    """See the module doc."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        hide_input_in_errors=True,
    )
