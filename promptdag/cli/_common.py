"""What every `promptdag` command shares: loading a spec with command-line overrides, quieting
Prefect and finding the local server before it starts, reading mapping files, exit codes and the
summaries printed at the end of a run. The command modules (workflow, spec, objective, remote,
runs, review) import it; it imports none of them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from promptdag.cli._terminal import safe
from promptdag.engine.objective import ObjectiveResult
from promptdag.engine.results import WorkflowResult
from promptdag.errors import SpecError
from promptdag.settings import get_settings
from promptdag.spec.graph import WorkflowGraph, build_graph
from promptdag.spec.models import WorkflowSpec, load_spec, parse_spec
from promptdag.spec.overrides import override
from promptdag.spec.validation import validate_spec

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def load_for_cli(
    path: str,
    model: str | None = None,
    breadth: int | None = None,
    infer_deps: bool = False,
    check_keys: bool = False,
    rows: list[dict[str, Any]] | None = None,
) -> tuple[WorkflowSpec, WorkflowGraph]:
    """Load and validate a spec; a run (`check_keys`) also needs every real model's key.
    With `rows` (a batch), what is validated is every row's instance of it."""
    spec = load_spec(path)
    if infer_deps:
        config = spec.config.model_copy(update={"infer_dependencies": True})
        spec = spec.model_copy(update={"config": config})
    spec = override(spec, model=model, breadth=breadth, default_model=get_settings().model)
    if model is not None or breadth is not None:  # values the file never had: check them again
        spec = parse_spec(spec.model_dump(exclude_unset=True),
                          source=f"{path} (with command-line options)")
    if check_keys:  # a run: its SDKs import while Prefect starts (llm/registry.py)
        from promptdag.llm.registry import preload_in_background
        from promptdag.spec.validation import spec_models

        preload_in_background(spec_models(spec))
    if rows is not None:
        from promptdag.engine.batch import validate_batch

        batch = validate_batch(spec, rows, check_keys=check_keys)
        return spec, build_graph(batch.spec)
    return spec, validate_spec(spec, check_keys=check_keys)


def quiet_prefect(verbose: bool) -> None:
    """Keep Prefect's console chatter (and offline telemetry errors) away from users.

    Logs still reach the Prefect API, so the UI shows them. Set before Prefect is imported.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if verbose or not get_settings().quiet_prefect:
        return
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_LOGGING_INTERNAL_LEVEL", "CRITICAL")


def use_local_server(quiet: bool, start: bool = False) -> None:
    """Point Prefect at the local server (started now if `start`), then check the environment:
    an API that does not answer or a PREFECT_HOME that cannot be written is one line and exit
    2 here, before Prefect starts (promptdag/remote/environment.py)."""
    from promptdag.remote.environment import check_environment

    find_local_server(quiet, start)
    check_environment()


def find_local_server(quiet: bool, start: bool = False) -> None:
    """Fast by default (promptdag/remote/autoserver.py): with no PREFECT_API_URL set, use the
    local server running in PREFECT_HOME, or for a run (`start`) start one in the background
    and say so once; the run then shows in the server's UI. The Python API follows the same
    rules (`autoserver.reach_prefect`)."""
    from promptdag.remote import autoserver

    autoserver.connect(start, say=lambda line: None if quiet
                       else print(safe(line, multiline=True), file=sys.stderr))


def say(message: str) -> None:
    print(safe(message), file=sys.stderr, flush=True)


def finish(result: WorkflowResult | ObjectiveResult, as_json: bool) -> int:
    if as_json:
        print(result.model_dump_json(indent=2))
    elif isinstance(result, ObjectiveResult):
        print(with_url(render_objective_summary(result), result))
    else:
        print(with_url(render_summary(result, spec_of_run(result.flow_run_id)), result))
    if result.stop_reason == "budget":
        say(budget_line(result))
    exit_now_if_the_api_is_gone(exit_code(result))
    return exit_code(result)


def budget_line(result: WorkflowResult | ObjectiveResult) -> str:
    """The one line a run stopped by its budget ends with (its finished results are kept)."""
    if isinstance(result, ObjectiveResult):
        return f"stopped: budget: {result.error or 'a call could pass the budget'}"
    done = result.summary.completed_count
    return (f"stopped: budget: {result.budget}; {done} of {result.summary.total_tasks} tasks "
            "finished and kept")


def spec_of_run(run_id: str | None) -> WorkflowSpec | None:
    """The spec a run on the server was started with, for its summary; None when it cannot
    be read (the summary then leaves out what needs the spec)."""
    from promptdag.errors import PromptDagError
    from promptdag.flows import lost_api
    from promptdag.remote.client import get_spec

    if run_id is None or lost_api.API_LOST:
        return None
    try:
        return get_spec(run_id)
    except PromptDagError:
        return None


def with_url(summary: str, result: WorkflowResult | ObjectiveResult) -> str:
    """The summary, ending with the run's page in the Prefect UI when a server is in use."""
    from promptdag.cli._progress import run_url

    url = run_url(result.flow_run_id)
    return f"{summary}\nview: {url}" if url else summary


def exit_code(result: WorkflowResult | ObjectiveResult) -> int:
    """0 only when the run completed and nothing was lost: a result that could not be saved
    (full or read-only storage) makes the run exit 1 even though its tasks completed."""
    if result.status != "completed":
        return EXIT_FAILED
    if isinstance(result, WorkflowResult) and (result.summary.unsaved_count or result.warning):
        return EXIT_FAILED  # unsaved results, or a result from memory the server never got
    return EXIT_OK


def read_mapping(path: str, what: str) -> dict[str, Any]:
    """A JSON or YAML file holding a mapping; SpecError (exit 2) otherwise. Bounded like a
    spec (spec/input_limits.py): a regular file, sizes, YAML aliases and depth; a context (as
    a file or in a request) at most PROMPTDAG_MAX_CONTEXT_BYTES."""
    import json

    import yaml

    from promptdag.spec.input_limits import check_context, load_yaml, measure, read_text

    file = Path(path)
    text = read_text(file, what)
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else load_yaml(text, path)
    except (RecursionError, ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"{path}: cannot read {what}: {first}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: {what} must be a mapping")
    measure(data, path)
    context = data if what == "context" else data.get("context")
    if what in ("context", "request") and context is not None:
        check_context(context, path)
    return data


def exit_now_if_the_api_is_gone(code: int) -> None:
    """The result is printed; Prefect's log and event workers would spend minutes retrying a
    server that is gone at interpreter exit. Exit without them."""
    from promptdag.flows import lost_api

    if lost_api.API_LOST:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def unsaved_line(result: WorkflowResult) -> str:
    unsaved = [t for t in result.tasks if t.warning and t.status == "completed"]
    reasons = sorted({(t.warning or "").removeprefix("result not saved: ") for t in unsaved})
    return (f"{len(unsaved)} of {result.summary.total_tasks} results were not saved "
            f"({'; '.join(reasons)}): a resume would call their models again")


def render_objective_summary(result: ObjectiveResult) -> str:
    lines = [
        f"{result.status.upper()} after {len(result.rounds)} round(s) "
        f"(stop: {result.stop_reason}) in {result.elapsed_seconds:.2f}s",
        f"usage: {result.usage.input_tokens} input + {result.usage.output_tokens} output tokens, "
        f"${result.usage.cost_usd:.4f}",
    ]
    for r in result.rounds:
        done = r.result.summary.completed_count if r.result else 0
        lines.append(f"  round {r.round}: {len(r.plan.tasks)} tasks, {done} completed"
                     + (f"; reflection: {safe(r.reflection.critique)}" if r.reflection else ""))
    if result.error:
        lines.append(f"error: {safe(result.error)}")
    if result.final_answer:
        lines += ["", safe(result.final_answer, multiline=True)]
    return "\n".join(lines)


SHORT_ANSWER_CHARS = 90  # an answer that is not a final task's, in the summary's task list


def render_summary(result: WorkflowResult, spec: WorkflowSpec | None = None,
                   tasks: bool = True) -> str:
    """The human-readable end of a run: status, counts, usage, the model(s) that answered, each
    task's outcome (unless `tasks` is false: a batch reports rows instead) and the final tasks'
    answers in full. With the run's `spec`, one line says when the simulated model answered
    only because no model was set."""
    s = result.summary
    lines = [
        f"{safe(result.name)}: {result.status.upper()} in {result.elapsed_seconds:.2f}s "
        f"({s.completed_count}/{s.total_tasks} completed, "
        + (f"{s.fan_out_count} from fan-outs, " if s.fan_out_count else "")
        + f"{s.failed_count} failed, "
        f"{s.skipped_count} skipped, {s.cancelled_count} cancelled)",
        f"usage: {result.usage.input_tokens} input + {result.usage.output_tokens} output tokens, "
        f"${result.usage.cost_usd:.4f}",
    ]
    if models := models_line(result):
        lines.append(models)
    if spec is not None and simulated_by_default(result, spec):
        lines.append("note: no model was set, so the offline simulated model answered: set "
                     "config.model (or --model, PROMPTDAG_MODEL) to a \"provider:model\" "
                     "such as openai:gpt-4o-mini")
    if s.reused_count:
        saved = result.saved_usage
        lines.append(
            f"reused: {s.reused_count} task(s) not asked again, saving "
            f"{sum(t.saved_calls for t in result.tasks)} call(s), {saved.input_tokens} input + "
            f"{saved.output_tokens} output tokens, ${saved.cost_usd:.4f}")
    if s.retried_count or s.truncated_count:
        lines.append(f"retries: {s.retried_count}; truncated answers: {s.truncated_count}"
                     + (" (raise max_tokens in model_options)" if s.truncated_count else ""))
    if s.unsaved_count:
        lines.append(f"NOT SAVED: {safe(unsaved_line(result))}")
    if result.flow_run_id:
        lines.append(f"flow run: {result.flow_run_id}")
    if not tasks:
        return "\n".join(lines)
    names = {t.name: safe(t.name) for t in result.tasks}  # escaped: as wide as printed
    width = min(40, max(len(name) for name in names.values()))
    final = final_tasks(result)
    answers: list[str] = []
    for task in result.tasks:
        detail = task.error if task.status != "completed" else (task.result or "")
        status: str = "reused" if task.reused else task.status
        if task.name in final and task.status == "completed" and detail:
            answers += ["", f"{names[task.name]} ({safe(task.model or 'no model')}):",
                        safe(detail, multiline=True)]
            detail = "(answer below)"
        detail = detail.splitlines()[0] if detail else ""
        if len(detail) > SHORT_ANSWER_CHARS:
            detail = detail[:SHORT_ANSWER_CHARS - 3] + "..."
        if task.truncated:
            status, detail = "truncated", f"[cut at the token limit] {detail}"
        lines.append(f"  {status:<9} {names[task.name][:width]:<{width}}  {safe(detail)}")
    return "\n".join(lines + answers)


def final_tasks(result: WorkflowResult) -> set[str]:
    """The tasks no other task depends on: the workflow's answers."""
    needed = {name for task in result.tasks for name in task.depends_on}
    return {task.name for task in result.tasks} - needed


def models_line(result: WorkflowResult) -> str:
    """`model: X`, or `models: X (2 tasks), Y (1 task)`: who answered the tasks that ran."""
    counts: dict[str, int] = {}
    for task in result.tasks:
        if task.model and task.status in ("completed", "failed") and not task.reused:
            counts[task.model] = counts.get(task.model, 0) + 1
    if not counts:
        return ""
    if len(counts) == 1:
        return f"model: {safe(next(iter(counts)))}"
    return "models: " + ", ".join(f"{safe(m)} ({n} task{'s' if n > 1 else ''})"
                                  for m, n in sorted(counts.items(), key=lambda i: -i[1]))


def simulated_by_default(result: WorkflowResult, spec: WorkflowSpec) -> bool:
    """True when a task was answered by the simulated model that no one chose: neither the
    task, nor the workflow's config (the command line and PROMPTDAG_MODEL write there)."""
    if "model" in spec.config.model_fields_set:
        return False
    chosen = {t.name for t in spec.tasks if "model" in t.model_fields_set and t.model}
    return any(t.model == "simulated" and t.name not in chosen and t.status == "completed"
               for t in result.tasks)
