"""The simulated model's structured answers: plans, reflections and dependency analyses.

Deterministic functions of the request's metadata, so the whole plan-execute-reflect loop runs
offline. Options (set in `model_options`):

- `extra_rounds`: the reflector asks for follow-up work in the first N rounds (default 0:
  satisfied at once);
- `invalid_plans`: the first N planner answers (first try, then the repair) have a task with
  an empty prompt;
- `fail_roles`: roles (planner, reflector, synthesiser, dependency_analyzer) whose calls fail
  with a permanent error;
- `outputs`: {task name: object}: the structured result a task with an `output_schema` gets
  (default: a deterministic example of its schema).
"""

from __future__ import annotations

import json
from typing import Any

from promptdag.spec.dependencies import keyword_dependencies

GENERIC_QUESTIONS = ("Background", "Key developments", "Open challenges")


def plan(meta: dict[str, Any], invalid_plans: int) -> dict[str, Any]:
    """Fan out over `context.focus_areas` (or a few generic sub-questions), then synthesise."""
    objective = str(meta.get("objective", ""))
    context = meta.get("context") or {}
    areas = [str(a) for a in context.get("focus_areas", []) if str(a).strip()]
    max_tasks = int(meta.get("max_tasks", 12))
    if areas:
        research = [
            (f"Research {area}", f"Research {area} for this objective: {objective}")
            for area in areas
        ]
    else:
        research = [
            (q, f"{q}: answer this part of the objective: {objective}") for q in GENERIC_QUESTIONS
        ]
    research = research[: max(1, max_tasks - 1)]
    names = [name for name, _ in research]
    tasks = [{"name": name, "prompt": prompt, "depends_on": []} for name, prompt in research]
    tasks.append(
        {
            "name": "Synthesize findings",
            "depends_on": names,
            "prompt": f"Synthesize the findings into one answer to: {objective}",
        }
    )
    attempt = 2 if meta.get("repair") else 1
    if attempt <= invalid_plans:  # an invalid plan on purpose, one no repair can guess at
        tasks[0]["prompt"] = ""
    return {"tasks": tasks}


def reflect(meta: dict[str, Any], extra_rounds: int) -> dict[str, Any]:
    """Satisfied by default; asks for one follow-up task per round in the first N rounds."""
    round_no = int(meta.get("round", 1))
    failed = list(meta.get("failed", []))
    done = int(meta.get("completed_count", 0))
    critique = f"Round {round_no}: {done} task(s) completed."
    if failed:
        critique += f" Failed: {', '.join(failed)}."
    if round_no <= extra_rounds:
        earlier = list(meta.get("task_names", []))
        follow_up = {
            "name": f"Deepen round {round_no}",
            "prompt": f"Go deeper on what round {round_no} left open for: {meta.get('objective')}",
            "depends_on": earlier[-1:],
        }
        return {
            "complete": False,
            "critique": critique + " More depth needed.",
            "follow_up_tasks": [follow_up],
        }
    return {
        "complete": True,
        "critique": critique + " The objective is answered.",
        "follow_up_tasks": [],
    }


def analyse_dependencies(meta: dict[str, Any]) -> dict[str, Any]:
    tasks = [(str(t["name"]), str(t["prompt"])) for t in meta.get("tasks", [])]
    inferred = keyword_dependencies(tasks)
    return {"tasks": [{"name": name, "depends_on": inferred[name]} for name, _ in tasks]}


def structured_answer(role: str, meta: dict[str, Any], options: dict[str, Any]) -> str | None:
    """JSON text for a structured request of a known role, None for an unknown role."""
    if role == "planner":
        return json.dumps(plan(meta, int(options.get("invalid_plans", 0))))
    if role == "reflector":
        return json.dumps(reflect(meta, int(options.get("extra_rounds", 0))))
    if role == "dependency_analyzer":
        return json.dumps(analyse_dependencies(meta))
    return None


def _digest(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def example_for_schema(
    schema: dict[str, Any], seed: str, root: dict[str, Any] | None = None
) -> Any:
    """A deterministic value satisfying a JSON schema (the common subset): enums pick a member
    from a hash of the prompt, strings echo it, numbers lie in their bounds, arrays hold
    `minItems` items (at least one)."""
    root = root or schema
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return example_for_schema(root.get("$defs", {}).get(name, {}), seed, root)
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_for_schema(schema[key][0], seed, root)
    if schema.get("enum"):
        return schema["enum"][_digest(seed) % len(schema["enum"])]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {key: example_for_schema(sub, f"{seed}/{key}", root) for key, sub in props.items()}
    if kind == "array":  # `minItems` items (at least one), so a fan-out has a list to run
        count = max(1, int(schema.get("minItems", 1)))
        count = min(count, int(schema.get("maxItems", count)))
        return [example_for_schema(schema.get("items", {}), f"{seed}/{i}", root)
                for i in range(count)]
    if kind in ("number", "integer"):
        low = float(schema.get("minimum", 0))
        high = float(schema.get("maximum", low + 1))
        value = low + (high - low) * (_digest(seed) % 1000) / 1000
        return int(value) if kind == "integer" else round(value, 3)
    if kind == "boolean":
        return _digest(seed) % 2 == 0
    if kind == "null":
        return None
    return f"simulated {seed.split('/')[-1]} {_digest(seed) % 10_000:04d}"


def task_output(
    meta: dict[str, Any], schema: dict[str, Any], options: dict[str, Any], prompt: str
) -> str:
    """A workflow task's structured result: `outputs[task name]` when given, else an example."""
    fixed = (options.get("outputs") or {}).get(meta.get("task"))
    if fixed is not None:
        return json.dumps(fixed)
    return json.dumps(example_for_schema(schema, prompt))
