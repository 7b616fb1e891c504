"""Prompt templates: `{{ name }}` placeholders replaced by plain text, never evaluated."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from promptdag.spec.conditions import split_reference

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
    max_chars: int | None = None,
) -> str:
    """The prompt a model sees: placeholders filled, unreferenced upstream results appended.

    Args:
        template: the task's prompt as written in the spec.
        context: the task's own `context` values (`{{ key }}` resolves here first).
        upstream: results of the task's dependencies, by task name (a dependency that was
            skipped is absent, or empty: it contributes nothing).
        references: the task names the template references (computed if not given).
        outputs: structured results of dependencies, for `{{ Task.field }}`.
        max_chars: the room the model's context window leaves for the prompt. When the prompt
            would be longer, upstream results are shortened to fit, each with a visible marker:
            appended ones first, explicitly referenced ones only if that is not enough. The
            template and context are never cut (a prompt too long by itself is the server's
            to refuse).
    """
    refs = set(placeholders(template)) if references is None else references
    texts = dict(upstream)

    def render_with(texts: Mapping[str, str]) -> str:
        def lookup(name: str) -> str:
            if name in context:
                return as_text(context[name])
            head, _, rest = name.partition(".")
            if rest and name not in texts and isinstance(context.get(head), (dict, list)):
                return as_text(field_value(context[head], rest.split(".")))  # {{ item.field }}
            if name in texts:
                return texts[name]
            found = split_reference(name, set(outputs or {}))
            if found is not None and outputs is not None:
                return as_text(field_value(outputs[found[0]], found[1]))
            # Validation rejects unknown names before a run; keep the text if one slips through.
            return "{{ " + name + " }}"

        prompt = render(template, lookup)
        extra = [name for name in texts if name not in refs and texts[name]]
        if extra:
            sections = "\n\n".join(f"### {name}\n{texts[name]}" for name in extra)
            prompt = f"{prompt}\n\n## Results of earlier tasks\n\n{sections}"
        return prompt

    prompt = render_with(texts)
    if max_chars is None or len(prompt) <= max_chars:
        return prompt
    appended = [name for name in texts if name not in refs and texts[name]]
    referenced = [name for name in texts if name in refs and texts[name]]
    for group in (appended, referenced):
        excess = len(prompt) - max_chars
        if excess <= 0 or not group:
            break
        # a referenced result may appear more than once in the template
        uses = [match.group(1) for match in PLACEHOLDER.finditer(template)]
        weight = {name: max(1, uses.count(name)) for name in group}
        texts.update(shorten(texts, group, excess, weight))
        prompt = render_with(texts)
    return prompt


def fit_texts(
    texts: Mapping[str, str], build: Callable[[Mapping[str, str]], str], max_chars: int | None
) -> str:
    """`build(texts)`, with the texts shortened evenly (each with a marker) when the result
    would be longer than `max_chars` (a role's prompt: every result of the work done)."""
    prompt = build(texts)
    if max_chars is None or len(prompt) <= max_chars:
        return prompt
    names = [name for name, text in texts.items() if text]
    cut = shorten(texts, names, len(prompt) - max_chars, dict.fromkeys(names, 1))
    return build({**texts, **cut})


CUT_MARKER = "\n[... {cut} characters of {name!r} cut to fit the model's context window]"


def shorten(
    texts: Mapping[str, str], names: list[str], excess: int, weight: Mapping[str, int]
) -> dict[str, str]:
    """Cut `excess` characters (plus markers) from the named texts, longest first: every text
    is capped at one length, the largest that removes enough (water-filling), so short results
    stay whole and long ones share the cut."""
    lengths = {name: len(texts[name]) for name in names}
    marker = {name: len(CUT_MARKER.format(cut=10**9, name=name)) for name in names}

    def removed(cap: int) -> int:
        return sum(
            weight[name] * (lengths[name] - cap - marker[name])
            for name in names if lengths[name] > cap
        )

    low, high = 0, max(lengths.values())
    while low < high:  # the largest cap that removes at least `excess`
        middle = (low + high + 1) // 2
        if removed(middle) >= excess:
            low = middle
        else:
            high = middle - 1
    cap = low
    return {
        name: texts[name][:cap] + CUT_MARKER.format(cut=lengths[name] - cap, name=name)
        for name in names if lengths[name] > cap
    }


def carry_inputs(
    prompt: str,
    context: Mapping[str, Any],
    inputs: Mapping[str, str],
    heading: str,
    taken: set[str] | frozenset[str] = frozenset(),
) -> tuple[str, dict[str, Any]]:
    """Results from outside a workflow (a parent workflow's, an earlier round's) carried into a
    task: each becomes a context value, referenced under `heading` at the end of the prompt.
    A name already used (`taken`: the workflow's task names; or a context key) is carried as
    `<name> (from outside)` so it never shadows a task or a value of the task's own."""
    carried = dict(context)
    sections = []
    for name, text in inputs.items():
        key = name if name not in taken and name not in carried else f"{name} (from outside)"
        carried[key] = text
        sections.append(f"### {name}\n{{{{ {key} }}}}")
    return f"{prompt}\n\n## {heading}\n\n" + "\n\n".join(sections), carried
