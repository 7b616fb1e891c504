"""Presets: `preset: speed | balanced | reliability | cost` in a workflow's or an objective's
config sets several fields at once (seed 002, E.7); a field set explicitly always wins.

The table is `PRESETS` below (`presets_table()` prints it as Markdown, as in docs/guide.md):
speed runs wide with few retries and short timeouts and keeps going past failures; balanced
is the middle; reliability runs narrow with many retries and long timeouts; cost stops at the
first failure, caches workflow answers and plans an objective with the provider's small model.

Pure: the table is data; `apply_preset` is called by the configs' validators with the names
of the fields their author set (`model_fields_set`).
"""

from __future__ import annotations

from typing import Any, Literal

Preset = Literal["speed", "balanced", "reliability", "cost"]

PRESETS: dict[str, dict[str, Any]] = {
    "speed": {"breadth": 10, "max_retries": 1, "retry_backoff_seconds": 0.5,
              "timeout_seconds": 60, "failure_mode": "continue"},
    "balanced": {"breadth": 5, "max_retries": 3, "retry_backoff_seconds": 1.0,
                 "timeout_seconds": 300, "failure_mode": "skip_dependents"},
    "reliability": {"breadth": 2, "max_retries": 6, "retry_backoff_seconds": 2.0,
                    "timeout_seconds": 600, "failure_mode": "skip_dependents"},
    "cost": {"breadth": 3, "max_retries": 1, "retry_backoff_seconds": 1.0,
             "timeout_seconds": 300, "failure_mode": "fail_fast"},
}
# Workflow-only additions (a field an objective's config does not have is left out).
WORKFLOW_EXTRAS: dict[str, dict[str, Any]] = {"cost": {"cache": True}}
# The cost preset's role models, by the provider of the objective's model.
CHEAP_MODELS = {"openai": "openai:gpt-4o-mini", "anthropic": "anthropic:claude-3-5-haiku-latest"}
CHEAP_ROLES = ("planner_model", "reflector_model")


def preset_values(
    preset: str, fields: set[str] | frozenset[str], model: str | None = None,
    workflow: bool = False,
) -> dict[str, Any]:
    """What `preset` sets among `fields` (the config's field names).

    Args:
        preset: a key of `PRESETS`.
        fields: the config's fields; only those are set.
        model: the config's default model: the cost preset picks its provider's small model
            for the planning roles.
        workflow: a workflow config (gets `WORKFLOW_EXTRAS`).
    """
    values = dict(PRESETS[preset])
    if workflow:
        values.update(WORKFLOW_EXTRAS.get(preset, {}))
    if preset == "cost" and model:
        cheap = CHEAP_MODELS.get(model.partition(":")[0].strip())
        if cheap:
            values.update(dict.fromkeys(CHEAP_ROLES, cheap))
    return {k: v for k, v in values.items() if k in fields}


def apply_preset(config: Any, workflow: bool = False) -> None:
    """Set the preset's values on `config` (a pydantic model with a `preset` field) for every
    field its author did not set; `model_fields_set` is left as it was, so a dump with
    `exclude_unset` keeps only the preset, which sets the same values again when loaded."""
    preset = getattr(config, "preset", None)
    if preset is None:
        return
    model = config.model if isinstance(config.model, str) else config.model[0]
    values = preset_values(preset, set(type(config).model_fields), model, workflow)
    for name, value in values.items():
        if name not in config.model_fields_set:
            config.__dict__[name] = value  # not an assignment: the field stays "unset"


def presets_table() -> str:
    """The presets as a Markdown table (docs/guide.md's, and `promptdag schema --reference`)."""
    columns = ["breadth", "max_retries", "retry_backoff_seconds", "timeout_seconds",
               "failure_mode"]
    lines = ["| preset | " + " | ".join(columns) + " | also |",
             "| --- | " + " | ".join("---" for _ in columns) + " | --- |"]
    for name, values in PRESETS.items():
        also = []
        if name in WORKFLOW_EXTRAS:
            also.append("workflows: " + ", ".join(f"`{k}: {str(v).lower()}`"
                                                  for k, v in WORKFLOW_EXTRAS[name].items()))
        if name == "cost":
            also.append("objectives: planner and reflector on the provider's small model ("
                        + ", ".join(f"`{m}`" for m in CHEAP_MODELS.values()) + ")")
        lines.append(f"| {name} | " + " | ".join(str(values[c]) for c in columns)
                     + f" | {'; '.join(also)} |")
    return "\n".join(lines)
