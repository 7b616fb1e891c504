"""Fan-out at run time, pure: the items an upstream result yields, the instances' names and
specs, and the one result dependents receive when every instance has settled.

The scheduler (flows/scheduler.py) holds a fan-out task back when it becomes ready, adds one
instance per item (`ReadySet.add`, each a dependency of the held task), and settles the held
task with `joined` once they have all settled. Everything here is decided without Prefect.
"""

from __future__ import annotations

import json
import re
from typing import Any

from promptdag.engine.ready_set import failure_text
from promptdag.engine.results import TaskResult
from promptdag.spec.fan_out import INDEX, ITEM, LINES, OUTPUTS
from promptdag.spec.models import TaskSpec
from promptdag.spec.template import field_value

LABEL_CHARS = 60
_LABEL_KEYS = ("title", "name", "label", "heading", "topic", "section")
_UNSAFE = re.compile(r"[{}\[\]\r\n\t]+")


class FanOutError(ValueError):
    """A fan-out that cannot run: its list is missing, not a list, or too long."""


def items_of(task: str, source: str, path: list[str], text: str | None, output: Any,
             max_items: int) -> list[Any]:
    """The items `for_each` yields from the upstream result (`text`, `output`).

    `path` is the field path after the upstream task's name (`["sections"]`, `["lines"]`,
    `["outputs"]`). A branch not taken upstream (no text, no output) yields no items.

    Raises:
        FanOutError: the field is not a list, or holds more than `max_items` items (one line
            naming the task, the count and the setting: a list is never cut silently).
    """
    found = field_value(output, path) if isinstance(output, dict) else None
    if found is None and path == [LINES]:
        found = [line.strip() for line in (text or "").splitlines() if line.strip()]
    elif found is None and not text and output is None:
        found = []
    if not isinstance(found, list):
        kind = "nothing" if found is None else type(found).__name__
        raise FanOutError(f"task {task!r}: for_each {{{{ {source} }}}} is not a list in the "
                          f"result (got {kind})")
    if len(found) > max_items:
        raise FanOutError(
            f"task {task!r}: for_each {{{{ {source} }}}} gave {len(found)} items, more than "
            f"max_items {max_items}; raise max_items or ask for fewer"
        )
    return found


def label(item: Any) -> str:
    """A short, name-safe label for an item: a string itself, an object's title-like field
    (else its first string), else its JSON."""
    if isinstance(item, dict):
        text = next((item[k] for k in _LABEL_KEYS if isinstance(item.get(k), str)), None)
        if text is None:
            text = next((v for v in item.values() if isinstance(v, str)), None)
        if text is None:
            text = json.dumps(item, ensure_ascii=False, sort_keys=True, default=str)
    elif isinstance(item, str):
        text = item
    else:
        text = json.dumps(item, ensure_ascii=False, default=str)
    text = " ".join(_UNSAFE.sub(" ", text).split())
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 3].rstrip() + "..."


def instance_name(task: str, index: int, item: Any) -> str:
    """`Research[2]: Heat pumps`: what the Prefect UI and the results call an instance."""
    text = label(item)
    return f"{task}[{index}]: {text}" if text else f"{task}[{index}]"


def instance_spec(task: TaskSpec, index: int, item: Any) -> TaskSpec:
    """The fan-out task for one item: its own name, `item` and `index` in its context, and
    everything else (prompt, model, retries, timeout, priority, output_schema) as declared."""
    return task.model_copy(update={
        "name": instance_name(task.name, index, item),
        "for_each": None,
        "when": None,  # the fan-out's condition held once, for every instance
        "context": {**task.context, ITEM: item, INDEX: index},
    })


def numbered(texts: list[str]) -> str:
    """Instances' results as one text, in item order: `1. ...` blank line `2. ...`."""
    return "\n\n".join(f"{i}. {text}" for i, text in enumerate(texts, 1))


def joined(name: str, depends_on: list[str], instances: list[TaskResult]) -> TaskResult:
    """The fan-out task's own result once its instances settled (in item order): their results
    as numbered text, and as a list in `output.outputs` (structured results where there are,
    texts otherwise). It made no call: usage and attempts are the instances'."""
    texts = [r.result or "" if r.status == "completed" else failure_text(r.name, r.error or "")
             for r in instances]
    outputs = [r.output if r.output is not None else text
               for r, text in zip(instances, texts, strict=True)]
    starts = [r.started_at for r in instances if r.started_at is not None]
    ends = [r.finished_at for r in instances if r.finished_at is not None]
    return TaskResult(
        name=name, status="completed", depends_on=depends_on, result=numbered(texts),
        output={OUTPUTS: outputs}, started_at=min(starts, default=None),
        finished_at=max(ends, default=None),
    )
