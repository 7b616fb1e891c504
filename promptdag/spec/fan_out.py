"""Fan-out in a spec: what `for_each` may name, checked before anything runs.

A task with `for_each: "{{ Outline.sections }}"` runs once per item of that list when `Outline`
settles. The list is a field of `Outline`'s `output_schema` (type: array), the non-empty lines of
a text answer (`{{ Outline.lines }}`), or the results of another fan-out (`{{ Research.outputs
}}`: map after map). The instance's prompt reads `{{ item }}`, `{{ item.field }}` and
`{{ index }}`; a task downstream of a fan-out reads `{{ Research }}` (numbered text) and
`{{ Research.outputs }}` (the list of instance results).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from promptdag.errors import SpecError
from promptdag.spec.conditions import split_reference
from promptdag.spec.models import FOR_EACH, TaskSpec

ITEM = "item"
INDEX = "index"
LINES = "lines"  # `{{ Task.lines }}`: a text answer's non-empty lines
OUTPUTS = "outputs"  # `{{ FanOut.outputs }}`: every instance's result, in item order
DEFAULT_ASSUMED_ITEMS = 5  # what `validate` assumes a fan-out yields, unless `--items N`


def source_text(for_each: str) -> str:
    """`"{{ Outline.sections }}"` -> `"Outline.sections"`."""
    match = FOR_EACH.fullmatch(for_each)
    if match is None:  # TaskSpec's validator refuses it first
        raise SpecError(f"for_each {for_each!r} is not one reference like {{{{ Task.field }}}}")
    return match.group(1)


def is_item_reference(text: str) -> bool:
    """`item`, `item.field...` or `index`: what an instance's prompt reads of its item."""
    return text in (ITEM, INDEX) or text.startswith(ITEM + ".")


def field_schema(schema: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    """The JSON schema of a dotted field path (`$ref`s followed), or None if it is absent."""
    node = schema
    for part in path:
        if "$ref" in node:
            node = schema.get("$defs", {}).get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        props = node.get("properties") or {}
        if part not in props:
            return None
        node = props[part]
    if "$ref" in node:
        node = schema.get("$defs", {}).get(str(node["$ref"]).rsplit("/", 1)[-1], {})
    return node


def _is_list(node: dict[str, Any]) -> bool:
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "array" in kinds:
        return True
    return any(_is_list(sub) for key in ("anyOf", "oneOf") for sub in node.get(key, []))


def check_for_each(
    task: TaskSpec,
    known: set[str],
    schemas: Mapping[str, dict[str, Any] | None],
    fan_outs: Mapping[str, str],
) -> str:
    """The task a fan-out's `for_each` reads, after checking that it names a list; SpecError
    (naming the task, the reference and the fix) otherwise."""
    assert task.for_each is not None
    text = source_text(task.for_each)
    who = f"task {task.name!r}: field 'for_each'"
    found = split_reference(text, known)
    if found is None or not found[1]:
        head = text.split(".")[0]
        match = difflib.get_close_matches(head, sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {match[0]!r}?" if match else ""
        raise SpecError(f"{who}: {{{{ {text} }}}} is not a field of a task's result{hint}")
    name, path = found
    if name == task.name:
        raise SpecError(f"{who}: a task cannot fan out over its own result")
    if name in fan_outs:
        if path == [OUTPUTS] or path == [LINES]:
            return name
        raise SpecError(f"{who}: task {name!r} fans out itself; fan out over its results with "
                        f"{{{{ {name}.{OUTPUTS} }}}}")
    schema = schemas.get(name)
    if schema is None:
        if path == [LINES]:
            return name
        raise SpecError(
            f"{who}: task {name!r} has no output_schema; use {{{{ {name}.{LINES} }}}} for the "
            "lines of its text answer, or give it an output_schema with a list field"
        )
    node = field_schema(schema, path)
    dotted = ".".join(path)
    if node is None:
        fields = ", ".join(sorted(schema.get("properties", {}))) or "none"
        raise SpecError(f"{who}: the output_schema of {name!r} has no field {dotted!r} "
                        f"(fields: {fields})")
    if not _is_list(node):
        kind = node.get("type", "untyped")
        raise SpecError(
            f"{who}: {{{{ {text} }}}} is {kind!s} in the output_schema of {name!r}, not a list; "
            "fan out over a field of type: array"
        )
    return name
