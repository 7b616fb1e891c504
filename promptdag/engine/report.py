"""What a finished run looks like to a reader: Markdown reports and the rows of a task table.

Pure rendering (no Prefect): flows/artifacts.py publishes these as Prefect artifacts, and
anything else (a notebook, an email) can use them as they are.
"""

from __future__ import annotations

from typing import Any

from promptdag.engine.estimate import Estimate
from promptdag.engine.objective import ObjectiveResult
from promptdag.engine.results import TaskResult, WorkflowResult
from promptdag.llm.base import Usage

TEXT_LIMIT = 4_000  # characters of one task's result in a report; the result JSON has it all
MERMAID_LIMIT = 200  # tasks; bigger graphs are too dense to read (and slow to draw)


def _clip(text: str, limit: int = TEXT_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usage(usage: Usage) -> str:
    return (f"{usage.input_tokens:,} input + {usage.output_tokens:,} output tokens, "
            f"${usage.cost_usd:.4f}")


def final_tasks(result: WorkflowResult) -> list[TaskResult]:
    """Tasks no other task depends on: the workflow's answers."""
    needed = {dep for task in result.tasks for dep in task.depends_on}
    return [task for task in result.tasks if task.name not in needed]


def workflow_report(result: WorkflowResult, estimate: Estimate | None = None) -> str:
    """The workflow's outcome: counts, usage (and the estimate made before it ran), the final
    tasks' results, what failed and why."""
    s = result.summary
    lines = [
        f"# {result.name}: {result.status}",
        "",
        f"**{s.completed_count} of {s.total_tasks} tasks completed** ({s.failed_count} failed, "
        f"{s.skipped_count} skipped, {s.cancelled_count} cancelled) in "
        f"{result.elapsed_seconds:.2f} s; {_usage(result.usage)}.",
    ]
    if estimate is not None:
        lines += ["", f"Before it ran, {estimate.line()}; {estimate.sources()}."]
    if s.reused_count:
        lines += ["", f"{s.reused_count} task(s) reused (no model call), saving "
                  f"{_usage(result.saved_usage)}."]
    if s.unsaved_count:
        lines += ["", f"**{s.unsaved_count} result(s) could not be saved**: a resume would "
                  "call their models again (see the task table's errors and the logs)."]
    answers = [t for t in final_tasks(result) if t.result]
    if answers:
        lines += ["", "## Results"]
        for task in answers:
            lines += ["", f"### {task.name}", "", _clip(task.result or "")]
    problems = [t for t in result.tasks if t.status != "completed"]
    if problems:
        lines += ["", "## Not completed", ""]
        lines += [f"- **{t.name}** ({t.status}): {_clip(t.error or '', 300)}" for t in problems]
    return "\n".join(lines) + "\n"


def objective_report(result: ObjectiveResult) -> str:
    """The objective's answer first, then how it was reached round by round."""
    lines = [
        f"# {result.objective}",
        "",
        f"**{result.status}** after {len(result.rounds)} round(s) (stop: {result.stop_reason}) "
        f"in {result.elapsed_seconds:.2f} s; {_usage(result.usage)}.",
    ]
    if result.error:
        lines += ["", f"**Error:** {result.error}"]
    if result.final_answer:
        lines += ["", "## Answer", "", _clip(result.final_answer, 4 * TEXT_LIMIT)]
    if result.rounds:
        lines += ["", "## Rounds", ""]
    for r in result.rounds:
        done = r.result.summary.completed_count if r.result else 0
        line = f"{r.round}. {len(r.plan.tasks)} tasks planned, {done} completed"
        if r.estimate and r.result:
            line += (f" in {r.result.elapsed_seconds:.1f} s ({r.estimate.line()}, "
                     f"{r.estimate.sources()})")
        if r.edited:
            line += "; plan edited at review"
        if r.reflection:
            verdict = "complete" if r.reflection.complete else "not complete"
            line += f"; reflection: {verdict}. {_clip(r.reflection.critique, 300)}"
        if r.error:
            line += f"; error: {r.error}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def task_rows(tasks: list[TaskResult], round_no: int | None = None) -> list[dict[str, Any]]:
    """One row per task for a table artifact: status, attempts, duration, tokens, cost."""
    rows = []
    for task in tasks:
        row: dict[str, Any] = {"round": round_no} if round_no is not None else {}
        row.update(
            task=task.name,
            status=task.status,
            reused=task.reused,  # taken from this run's earlier attempt or the cache: no call
            attempts=task.attempts,
            duration_s=round(task.duration_seconds, 3) if task.duration_seconds is not None
            else None,
            input_tokens=task.usage.input_tokens,
            output_tokens=task.usage.output_tokens,
            cost_usd=round(task.usage.cost_usd, 6),
            saved_tokens=(task.saved_usage.input_tokens + task.saved_usage.output_tokens
                          if task.saved_usage else 0),
            saved_usd=round(task.saved_usage.cost_usd, 6) if task.saved_usage else 0.0,
            model=task.model,
            depends_on=", ".join(task.depends_on),
            error=_clip(task.error or task.warning or "", 200) or None,
        )
        rows.append(row)
    return rows


def objective_task_rows(result: ObjectiveResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for r in result.rounds:
        if r.result:
            rows += task_rows(r.result.tasks, r.round)
    return rows


def mermaid_markdown(mermaid: str, tasks: int) -> str:
    """The DAG as a fenced Mermaid block (drawn by UI v2 and GitHub; shown as text by UI v1)."""
    if tasks > MERMAID_LIMIT:
        return (f"The DAG has {tasks} tasks: too many to draw (limit {MERMAID_LIMIT}). "
                "Print it with `promptdag graph SPEC`.\n")
    return f"```mermaid\n{mermaid}\n```\n"


def progress_line(finished: int, total: int, rounds: int | None = None,
                  depth: int | None = None) -> str:
    """The progress artifact's description: what a person watching the UI reads."""
    line = f"{finished} of {total} tasks finished"
    if rounds is not None and depth is not None:
        line += f" (round {rounds} of at most {depth})"
    return line
