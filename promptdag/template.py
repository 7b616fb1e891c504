"""Prompt templates: `{{ name }}` placeholders replaced by plain text, never evaluated."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from promptdag.conditions import split_reference

PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


def placeholders(template: str) -> list[str]:
    """Names referenced by a template, in order of first appearance, without repeats."""
    seen: dict[str, None] = {}
    for match in PLACEHOLDER.finditer(template):
        seen.setdefault(match.group(1), None)
    return list(seen)


def as_text(value: Any) -> str:
    """How a context value or result appears inside a prompt."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def render(template: str, lookup: Callable[[str], str]) -> str:
    """Replace each placeholder by `lookup(name)` in one pass.

    One pass matters: an upstream result that itself contains `{{ x }}` is inserted as text and
    never expanded again, so a model's output cannot inject template references.
    """
    return PLACEHOLDER.sub(lambda m: lookup(m.group(1)), template)


def field_value(output: Any, path: list[str]) -> Any:
    """`output["a"]["b"]` for path ["a", "b"]; None where the path does not exist."""
    value = output
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def render_task_prompt(
    template: str,
    context: Mapping[str, Any],
    upstream: Mapping[str, str],
    references: set[str] | None = None,
    outputs: Mapping[str, Any] | None = None,
) -> str:
    """The prompt a model sees: placeholders filled, unreferenced upstream results appended.

    Args:
        template: the task's prompt as written in the spec.
        context: the task's own `context` values (`{{ key }}` resolves here first).
        upstream: results of the task's dependencies, by task name.
        references: the task names the template references (computed if not given).
        outputs: structured results of dependencies, for `{{ Task.field }}`.
    """
    refs = set(placeholders(template)) if references is None else references

    def lookup(name: str) -> str:
        if name in context:
            return as_text(context[name])
        if name in upstream:
            return upstream[name]
        found = split_reference(name, set(outputs or {}))
        if found is not None and outputs is not None:
            return as_text(field_value(outputs[found[0]], found[1]))
        # Validation rejects unknown names before a run; keep the text if one slips through.
        return "{{ " + name + " }}"

    prompt = render(template, lookup)
    extra = [name for name in upstream if name not in refs]
    if extra:
        sections = "\n\n".join(f"### {name}\n{upstream[name]}" for name in extra)
        prompt = f"{prompt}\n\n## Results of earlier tasks\n\n{sections}"
    return prompt
