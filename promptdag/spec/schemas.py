"""Output schemas for structured task results: a JSON schema in the spec, or a named model.

The named models are the ones defined here; a spec never names a Python path, so it cannot
make promptdag import code. (A name registered at run time would exist only in the registering
process, not in the worker that runs a deployment's run: a spec needing another shape writes its
JSON schema.)
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from promptdag.errors import SpecError


class Classification(BaseModel):
    """A label picked from a set, e.g. to choose a branch."""

    label: str = Field(..., description="The chosen label.")
    reason: str = Field("", description="Why, in one sentence.")


class Score(BaseModel):
    """A number on a scale, e.g. a quality or confidence score."""

    score: float = Field(..., description="The score.")
    reason: str = Field("", description="Why, in one sentence.")


_MODELS: dict[str, type[BaseModel]] = {"classification": Classification, "score": Score}


def resolve_schema(schema: str | dict[str, Any]) -> dict[str, Any]:
    """A spec's `output_schema` as a JSON schema dict; SpecError for unknown names."""
    if isinstance(schema, dict):
        if schema.get("type", "object") != "object":
            raise SpecError("output_schema must describe an object (type: object)")
        return schema
    model = _MODELS.get(schema.lower())
    if model is None:
        known = ", ".join(sorted(_MODELS))
        raise SpecError(f"unknown output_schema {schema!r}; known names: {known}")
    return model.model_json_schema()


def has_field(schema: dict[str, Any], path: list[str]) -> bool:
    """Whether a dotted field path exists in a JSON schema (free-form objects allow any)."""
    node = schema
    for part in path:
        if "$ref" in node:
            ref = str(node["$ref"]).rsplit("/", 1)[-1]
            node = schema.get("$defs", {}).get(ref, {})
        props = node.get("properties")
        if props is None:
            return node.get("type") in (None, "object") and node.get(
                "additionalProperties", True) is not False
        if part not in props:
            return False
        node = props[part]
    return True
