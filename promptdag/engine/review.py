"""Plan review: what a person sees before an objective's plan runs, and what they answer.

The objective flow (`flows/review.py`) pauses with a Prefect run input whose fields are
`ReviewAnswer`'s: the Prefect UI shows them as a form under the run's "Resume" button, and
`promptdag approve` / `promptdag reject` (or any script, through `resume_flow_run`) send them.

- `decision: approve` runs the plan in `tasks` (prefilled with the proposed plan: an edited
  text is run as edited);
- `decision: edit` runs the plan in `tasks`, which must be given;
- `decision: reject` ends the run with `stop_reason: rejected`; no task runs.

An edited plan is checked by the same code as any planner's plan (`check_plan`: the graph
validation of every spec); an invalid one is refused with its one-line error, published, and
the run waits again. Pure: no Prefect here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from promptdag.engine.estimate import Estimate
from promptdag.engine.events import Channel
from promptdag.engine.objective import PlannedTask
from promptdag.engine.report import mermaid_markdown
from promptdag.errors import SpecError
from promptdag.spec.graph import WorkflowGraph

Decision = Literal["approve", "edit", "reject"]
PROMPT_PREVIEW = 160  # characters of a prompt in the review's table


class ReviewAnswer(BaseModel):
    """A reviewer's answer (the fields of the Prefect UI's Resume form)."""

    decision: Decision = Field(
        "approve",
        description="approve: run the plan below (as edited, if you changed it); edit: run "
        "the plan below, changed; reject: end the run without running any task.",
    )
    tasks: str = Field(
        "",
        description="The plan's tasks as JSON: a list of {name, prompt, depends_on}. It holds "
        "the proposed plan; change it to run your own (checked like any spec; an invalid plan "
        "is refused with its error and the run waits again).",
    )
    approve_all: bool = Field(
        False, description="Also approve every later round's plan without asking again."
    )
    reason: str = Field("", description="Why (kept in the run's result when rejecting).")


_TASKS = TypeAdapter(list[PlannedTask])


def plan_json(tasks: list[PlannedTask]) -> str:
    """The tasks as the JSON a reviewer edits (`depends_on: null` means "infer")."""
    return json.dumps([t.model_dump(mode="json") for t in tasks], indent=2, ensure_ascii=False)


def parse_tasks(text: str | list[Any] | dict[str, Any]) -> list[PlannedTask]:
    """An edited plan: a JSON list of tasks, or `{"tasks": [...]}`; SpecError (one line)."""
    data: Any = text
    if isinstance(text, str):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"the edited plan is not JSON: line {exc.lineno}, column "
                            f"{exc.colno}: {exc.msg}") from None
    if isinstance(data, dict) and "tasks" in data:
        data = data["tasks"]
    if not isinstance(data, list) or not data:
        raise SpecError("the edited plan must be a non-empty JSON list of tasks "
                        "({name, prompt, depends_on})")
    try:
        return _TASKS.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"the edited plan: task #{_task_number(first['loc'])}: field "
                        f"{where.partition('.')[2] or where!r}: {first['msg']}") from None


def _task_number(loc: tuple[Any, ...]) -> str:
    return str(loc[0] + 1) if loc and isinstance(loc[0], int) else "?"


def same_plan(a: list[PlannedTask], b: list[PlannedTask]) -> bool:
    return [t.model_dump() for t in a] == [t.model_dump() for t in b]


def _cell(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > PROMPT_PREVIEW:
        text = text[: PROMPT_PREVIEW - 3] + "..."
    return text.replace("|", "\\|")


def review_markdown(
    tasks: list[PlannedTask], graph: WorkflowGraph, estimate: Estimate, round_no: int,
    error: str | None = None,
) -> str:
    """The plan as the review artifact and the Resume form's description show it."""
    lines = [f"# Plan for round {round_no}: waiting for review", ""]
    if error:
        lines += [f"**Not accepted: {error}.** Correct the plan and answer again.", ""]
    lines += [
        f"{len(tasks)} tasks; **{estimate.line()}**; {estimate.sources()}.", "",
        "| task | depends on | prompt |", "| --- | --- | --- |",
    ]
    for task in tasks:
        needs = ", ".join(graph.depends_on.get(task.name, ())) or "-"
        lines.append(f"| {_cell(task.name)} | {_cell(needs)} | {_cell(task.prompt)} |")
    lines += ["", mermaid_markdown(graph.mermaid(), len(graph.names)),
              "Answer with **Resume** (approve, edit the tasks' JSON, or reject), or from a "
              "shell: `promptdag approve RUN [--plan FILE] [--all]`, `promptdag reject RUN`."]
    return "\n".join(lines)


def review_text(tasks: list[PlannedTask], graph: WorkflowGraph, estimate: Estimate,
                round_no: int) -> str:
    """The plan for a terminal (not yet escaped: the caller passes it through `safe`)."""
    lines = [f"Plan for round {round_no} ({len(tasks)} tasks; {estimate.line()}):"]
    for i, level in enumerate(graph.levels(), 1):
        lines.append(f"  stage {i}:")
        for name in level:
            needs = graph.depends_on.get(name, ())
            prompt = " ".join(next(t.prompt for t in tasks if t.name == name).split())
            lines.append(f"    - {name}" + (f" (after {', '.join(needs)})" if needs else ""))
            lines.append(f"      {prompt[:PROMPT_PREVIEW]}")
    return "\n".join(lines)


# -- a reviewer in this process (the terminal of `promptdag objective --review`) -------------


@dataclass(frozen=True)
class ReviewRequest:
    """A plan waiting for review, as the flow announces it to a reviewer in its process."""

    flow_run_id: str
    round_no: int
    text: str  # review_text
    plan: str  # plan_json
    error: str | None = None
    key: str = ""  # the pause this review waits in: an answer for an older one is refused


Reviewer = Callable[[ReviewRequest], None]
_plans: Channel[ReviewRequest] = Channel()


def add_reviewer(reviewer: Reviewer) -> Callable[[], None]:
    """Tell `reviewer` (quick, non-blocking) about each plan waiting in this process; it
    answers through Prefect's API like anyone else. Returns the function that removes it."""
    return _plans.subscribe(reviewer)


def announce(request: ReviewRequest) -> None:
    _plans.emit(request)
