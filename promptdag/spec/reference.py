"""The spec file's JSON Schema and its field reference, both generated from the pydantic models
(`promptdag.spec.models`), so editors, docs and validation never disagree.

`promptdag schema` prints the JSON Schema (for YAML editors: `# yaml-language-server:
$schema=...`); `promptdag schema --reference` prints the Markdown reference that
docs/spec-reference.md holds (a test keeps the two the same).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from promptdag.spec.models import TaskSpec, WorkflowConfig, WorkflowSpec


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a workflow spec file (YAML or JSON)."""
    schema = WorkflowSpec.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """A JSON Schema node as a short type name: `int`, `str or list[str]`, `one of a, b`."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        target = defs.get(name, {})
        return _type(target, defs) if "enum" in target else f"`{_KEYS.get(name, name)}`"
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    if "anyOf" in node:
        return " or ".join(_type(option, defs) for option in node["anyOf"])
    kind = node.get("type")
    if kind == "array":
        return f"list of {_type(node.get('items', {}), defs)}"
    if kind == "object":
        return "mapping"
    return {"string": "text", "integer": "integer", "number": "number", "boolean": "true/false",
            "null": "null"}.get(str(kind), "any")


_KEYS = {"WorkflowConfig": "config", "TaskSpec": "task", "WorkflowSpec": "workflow spec"}


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    if isinstance(value, BaseModel):
        return "(see below)"
    if hasattr(value, "value"):
        value = value.value
    return "`" + json.dumps(value, default=str) + "`"


def _table(model: type[BaseModel]) -> list[str]:
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    if "$ref" in schema:  # a recursive model is a reference to its own definition
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    rows = ["| field | type | default | what it does |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        what = " ".join((info.description or "").split()).replace("|", "\\|")
        kind = _type(schema["properties"][name], defs).replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | {_default(info)} | {what} |")
    return rows


def spec_reference() -> str:
    """Every field of a spec file, as Markdown tables (top level, `config`, `tasks[]`)."""
    parts = [
        "Generated from `promptdag/spec/models.py` by `promptdag schema --reference`; "
        "`promptdag schema` prints the same as JSON Schema for editors.",
        "",
        "**Top level**",
        "",
        *_table(WorkflowSpec),
        "",
        "**`config`**",
        "",
        *_table(WorkflowConfig),
        "",
        "**`tasks[]`**",
        "",
        *_table(TaskSpec),
    ]
    return "\n".join(parts) + "\n"
