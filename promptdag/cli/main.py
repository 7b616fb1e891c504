"""The `promptdag` command: run | validate | graph.

Exit codes: 0 completed/valid, 1 the workflow failed, 2 bad input (one line on stderr, no
traceback), 3 internal error (a bug: one line; PROMPTDAG_DEBUG=1 shows the traceback),
130 interrupted. Prefect is imported only when a run starts, so validation is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from promptdag.cli import remote as cli_remote
from promptdag.cli import review as cli_review
from promptdag.cli import runs as cli_runs
from promptdag.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    exit_code,
    exit_now_if_the_api_is_gone,
    find_local_server,
    finish,
    load_for_cli,
    quiet_prefect,
    read_mapping,
    render_objective_summary,
    render_summary,
    say,
    unsaved_line,
    use_local_server,
    with_url,
)
from promptdag.cli._terminal import safe
from promptdag.engine.events import subscribe
from promptdag.engine.objective import ObjectiveResult
from promptdag.engine.results import WorkflowResult
from promptdag.errors import PromptDagError, SpecError
from promptdag.spec.models import WorkflowSpec


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors are bad input too: exit 2, one line
        self.exit(EXIT_BAD_INPUT, f"promptdag: {message} (see promptdag --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="promptdag", description="Run DAGs of LLM prompts on Prefect.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a workflow spec")
    run.add_argument("spec", help="spec file (.yaml, .yml or .json)")
    run.add_argument("--model", help='use this model for every task ("provider:model")')
    run.add_argument("--breadth", type=int, help="max tasks running at once")
    run.add_argument("--json", action="store_true", help="print only the result JSON on stdout")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress: only the summary")
    run.add_argument("--verbose", action="store_true", help="show Prefect's own logs")
    reuse = run.add_mutually_exclusive_group()
    reuse.add_argument(
        "--resume",
        action="store_true",
        help="if the latest run of this spec did not complete, resume it (the default)",
    )
    reuse.add_argument(
        "--fresh", action="store_true",
        help="start a new run even if the latest did not complete; call every model",
    )
    run.add_argument("--data", help="run the workflow once per row of this .jsonl or .csv file "
                     "(row fields are {{ field }} in every prompt)")
    run.add_argument("--output", help="with --data: write one JSON line per row as rows finish")
    run.add_argument("--limit", type=int, help="with --data: only the first N rows (a trial)")
    run.add_argument(
        "--infer-deps",
        action="store_true",
        help="let the model infer dependencies of tasks without depends_on (seed 002)",
    )

    objective = sub.add_parser("objective", help="plan, execute and reflect on an objective")
    objective.add_argument("objective", nargs="?", help="what you want done")
    objective.add_argument("--request", help="a seed plan-execute request body (JSON or YAML)")
    objective.add_argument("--context-file", help="JSON or YAML with context (e.g. focus_areas)")
    objective.add_argument("--breadth", type=int, help="max tasks running at once")
    objective.add_argument("--depth", type=int, help="max plan/reflect rounds")
    objective.add_argument("--model", help='model for every role ("provider:model")')
    objective.add_argument("--json", action="store_true", help="print only the result JSON")
    objective.add_argument("--quiet", "-q", action="store_true",
                           help="no progress: only the summary")
    objective.add_argument("--fresh", action="store_true",
                           help="start a new run even if the latest run of this objective "
                           "did not complete")
    objective.add_argument("--verbose", action="store_true", help="show Prefect's own logs")
    objective.add_argument("--review", action="store_true",
                           help="show each plan before it runs and wait for approval (in a "
                           "terminal: asks; elsewhere: promptdag approve/reject RUN or the UI)")

    validate = sub.add_parser("validate", help="check a spec and print its stages")
    validate.add_argument("spec")
    validate.add_argument("--history", action="store_true",
                          help="estimate each model's latency from past runs on the Prefect "
                          "server (default: offline, from hints and provider defaults)")

    graph = sub.add_parser("graph", help="print the DAG as a Mermaid diagram")
    graph.add_argument("spec")

    schema = sub.add_parser("schema", help="print the JSON Schema of a spec file (for editors)")
    schema.add_argument("--reference", action="store_true",
                        help="print the field reference as Markdown instead")

    retry = sub.add_parser(
        "retry", help="retry a run that did not complete, reusing its finished tasks"
    )
    retry.add_argument("run_id", help="the flow run id (as `run` and `submit` print it)")
    retry.add_argument("--json", action="store_true", help="print only the result JSON")
    retry.add_argument("--wait", action="store_true",
                       help="a deployment run: wait for the worker and print the result")
    retry.add_argument("--verbose", action="store_true", help="show Prefect's own logs")
    cli_remote.add_commands(sub)  # submit, status, result, server: runs on a Prefect server
    cli_runs.add_commands(sub)  # runs, logs, cancel, watch: any run, through Prefect's API
    cli_review.add_commands(sub)  # approve, reject: answer a plan waiting for review
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "graph":
            return _graph(args)
        if args.command == "schema":
            return _schema(args)
        if args.command == "objective":
            return _objective(args)
        if args.command == "retry":
            return _retry(args)
        if args.command in cli_remote.COMMANDS:
            return cli_remote.run_command(args)
        if args.command in cli_runs.COMMANDS:
            return cli_runs.run_command(args)
        if args.command in cli_review.COMMANDS:
            return cli_review.run_command(args)
        return _run(args)
    except PromptDagError as exc:
        print(f"promptdag: error: {safe(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("promptdag: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `promptdag status RUN | head -1`: the reader left, end quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is silent too
        return EXIT_OK
    except Exception as exc:  # a bug, not bad input: one line, traceback on request
        from promptdag.remote.environment import environment_problem

        if (problem := environment_problem(exc)) is not None:  # the machine's, not a bug
            print(f"promptdag: error: {safe(problem)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if os.environ.get("PROMPTDAG_DEBUG"):
            raise
        print(f"promptdag: internal error: {type(exc).__name__}: {safe(exc)} "
              "(set PROMPTDAG_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    return f"promptdag {of('promptdag')} (prefect {of('prefect')}, Python {sys.version.split()[0]})"


def _schema(args: argparse.Namespace) -> int:
    import json

    from promptdag.spec.reference import spec_reference, spec_schema

    print(spec_reference() if args.reference else json.dumps(spec_schema(), indent=2))
    return EXIT_OK


def _objective_request(path: str) -> bool:
    """True for a file that is an objective request body (`objective`, no `tasks`)."""
    try:
        data = read_mapping(path, "file")
    except SpecError:
        return False
    return "objective" in data and "tasks" not in data


def _validate(args: argparse.Namespace) -> int:
    if _objective_request(args.spec):  # a plan-execute body, not a spec: check it as one
        from promptdag.api import as_objective_request

        request = as_objective_request(read_mapping(args.spec, "request"))
        print(f"{safe(args.spec)}: a valid objective request (breadth {request.config.breadth}, "
              f"depth {request.config.depth}); run it with: "
              f"promptdag objective --request {args.spec}")
        return EXIT_OK
    spec, graph = load_for_cli(args.spec)
    path, _ = graph.critical_path()
    print(
        f"{safe(args.spec)}: valid: {len(graph.names)} tasks, {len(graph.levels())} stages, "
        f"breadth {spec.config.breadth}"
    )
    for i, level in enumerate(graph.levels(), 1):
        print(f"  stage {i}: {', '.join(map(safe, level))}")
    print(f"  critical path ({len(path)} tasks): {' -> '.join(map(safe, path))}")
    from promptdag.engine.estimate import estimate

    found = estimate(spec, graph, _latency_history() if args.history else None)
    print(f"  {found.line()}")
    print(f"  {safe(found.sources())}")
    return EXIT_OK


def _latency_history() -> dict[str, tuple[float, int]]:
    """`validate --history`: past runs' medians from the Prefect server in use (none is
    started for it)."""
    find_local_server(quiet=True)
    if not os.environ.get("PREFECT_API_URL"):
        print("promptdag: no Prefect server to read past runs from: estimating from hints and "
              "defaults", file=sys.stderr)
        return {}
    quiet_prefect(verbose=False)
    from promptdag.flows.latency_history import model_latencies

    return model_latencies()


def _graph(args: argparse.Namespace) -> int:
    _, graph = load_for_cli(args.spec)
    print(safe(graph.mermaid(), multiline=True))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    _check_batch_args(args)
    rows = None
    if args.data:
        from promptdag.engine.batch import read_rows

        rows = read_rows(args.data, args.limit)
    spec, _ = load_for_cli(args.spec, args.model, args.breadth, args.infer_deps, check_keys=True,
                    rows=rows)
    if args.fresh:
        spec = spec.model_copy(
            update={"config": spec.config.model_copy(update={"reuse_results": False})}
        )
    quiet_prefect(args.verbose)
    use_local_server(quiet=args.quiet, start=True)
    from promptdag.api import run  # Prefect starts here, only for valid input
    from promptdag.tasks.result_persistence import check_storage

    check_storage()  # full or read-only: one line, exit 2, before the banner
    if rows is not None:
        return _run_batch(args, spec, rows)
    banner = f"Running {spec.name!r}: {len(spec.tasks)} tasks, breadth {spec.config.breadth}"
    return _execute(banner, lambda: run(spec, on_notice=say),
                    lambda result: render_summary(result, Path(args.spec).name), args.json,
                    args.quiet, total=len(spec.tasks), plain=args.verbose)


def _check_batch_args(args: argparse.Namespace) -> None:
    if not args.data and (args.output or args.limit is not None):
        raise SpecError("--output and --limit go with --data ROWS_FILE")
    if args.limit is not None and args.limit < 1:
        raise SpecError("--limit must be at least 1")


def _run_batch(args: argparse.Namespace, spec: WorkflowSpec, rows: list[dict[str, Any]]) -> int:
    """One run of the workflow over every row (engine/batch.py); rows reported, and written
    to --output, as they finish."""
    from promptdag.api import run
    from promptdag.cli._batch_output import RowWriter, rows_line
    from promptdag.cli._progress import choose_mode, show_progress
    from promptdag.engine.batch import expand

    batch = expand(spec, rows)
    mode = choose_mode(quiet=args.json or args.quiet)
    mode = "plain" if mode == "live" and args.verbose else mode  # Prefect's logs on stderr too
    # plain: a line per row; live: the task bar, with the rows so far under it
    writer = RowWriter(batch, Path(args.output) if args.output else None,
                       progress=mode == "plain")
    unsubscribe = subscribe(writer)
    if mode != "quiet":
        print(f"Running {spec.name!r} over {len(rows)} rows: {len(batch.spec.tasks)} tasks, "
              f"breadth {spec.config.breadth}", file=sys.stderr)
    try:
        with show_progress("quiet" if mode == "plain" else mode, title=spec.name,
                           total=len(batch.spec.tasks),
                           extra=lambda: f"rows: {writer.written} of {writer.total} done"
                           + (f", {writer.failed} failed" if writer.failed else "")):
            result = run(spec, on_notice=say, data=rows)
    finally:
        unsubscribe()
    writer.finish(result)
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        lines = [render_summary(result, Path(args.spec).name, tasks=False),
                 rows_line(result.rows or [])]
        if args.output:
            lines.append(f"rows written to {args.output}")
        print(with_url("\n".join(lines), result))
    return exit_code(result)


def _retry(args: argparse.Namespace) -> int:
    """Prefect's flow-run retry (flows/resume.py): a deployment run goes back to Scheduled for a
    worker; a local run runs again here, as the same flow run, reusing its finished tasks."""
    import asyncio

    quiet_prefect(args.verbose)
    use_local_server(quiet=False)  # a run to retry lives on a server: never start a new one
    from promptdag.flows.plan_execute_reflect import plan_execute_reflect
    from promptdag.flows.resume import retry
    from promptdag.flows.run_workflow import run_workflow

    flows: dict[str, Any] = {"run-workflow": lambda: run_workflow,
                             "plan-execute-reflect": lambda: plan_execute_reflect}

    def started(previous: str) -> None:
        say(f"retrying run {args.run_id} ({previous.lower()}) here, reusing its finished tasks")

    def call() -> Any:
        retried = asyncio.run(retry(args.run_id, flows, on_start=started))
        if retried.deployment:
            return retried
        assert retried.outcome is not None
        data = asyncio.run(retried.outcome.value())
        if isinstance(data, BaseException):
            raise data
        result = (ObjectiveResult if isinstance(data, dict) and "objective" in data
                  else WorkflowResult).model_validate(data)
        if retried.outcome.lost_api:
            say(retried.outcome.lost_api)
            if isinstance(result, WorkflowResult):
                result = result.model_copy(update={"warning": retried.outcome.lost_api})
        return result

    from promptdag.cli._progress import choose_mode, show_progress

    mode = choose_mode(quiet=args.json)
    with show_progress("plain" if mode == "live" and args.verbose else mode,
                       title=f"retry {args.run_id[:8]}"):
        outcome = call()
    if isinstance(outcome, (WorkflowResult, ObjectiveResult)):
        return finish(outcome, args.json)
    if not args.wait:
        print(f"run {outcome.flow_run_id} ({outcome.previous_state.lower()}) is scheduled "
              f"again: a worker of its deployment will run it, reusing its finished tasks; "
              f"follow it with `promptdag status {outcome.flow_run_id}`", file=sys.stderr)
        print(outcome.flow_run_id)
        return EXIT_OK
    from promptdag.remote import client

    return finish(client.wait_for_result(outcome.flow_run_id), args.json)


def _objective(args: argparse.Namespace) -> int:
    from promptdag.api import as_objective_request

    data: dict[str, Any] = read_mapping(args.request, "request") if args.request else {}
    if args.objective:
        data["objective"] = args.objective
    if "objective" not in data:
        raise SpecError("give an objective: promptdag objective \"...\" (or --request FILE)")
    if args.context_file:
        data["context"] = read_mapping(args.context_file, "context")
    overrides = {k: v for k, v in (("breadth", args.breadth), ("depth", args.depth),
                                   ("model", args.model), ("review", args.review or None))
                 if v is not None}
    request = as_objective_request(data, config=overrides or None)
    quiet_prefect(args.verbose)
    use_local_server(quiet=args.quiet, start=True)
    from promptdag.api import run_objective

    banner = (f"Objective: {request.objective!r} (breadth {request.config.breadth}, "
              f"depth {request.config.depth})")
    # Review (promptdag/cli/review.py): a terminal asks; elsewhere, how to answer is printed
    asking = request.config.review and sys.stdin.isatty() and sys.stderr.isatty()
    stop = cli_review.watch_reviews(asking) if request.config.review else None
    try:
        return _execute(banner, lambda: run_objective(request, fresh=args.fresh, on_notice=say),
                        render_objective_summary, args.json, args.quiet,
                        plain=asking or args.verbose)
    finally:
        if stop:
            stop()


R = TypeVar("R", WorkflowResult, ObjectiveResult)


def _execute(banner: str, call: Callable[[], R], render: Callable[[R], str], as_json: bool,
             quiet: bool = False, total: int | None = None, plain: bool = False) -> int:
    """Run with live progress on stderr (promptdag/cli/_progress.py); print the result JSON (--json)
    or a summary ending with the run's UI URL."""
    from promptdag.cli._progress import choose_mode, show_progress

    mode = choose_mode(quiet=as_json or quiet)
    # a question is asked on the terminal, or Prefect's logs go there (--verbose): no redrawn bar
    if plain and mode == "live":
        mode = "plain"
    if mode != "quiet":
        print(banner, file=sys.stderr)
    from prefect.exceptions import TerminationSignal

    from promptdag.remote.runs import honour_cancellation

    try:
        with show_progress(mode, title=banner.split(":")[0], total=total), \
                honour_cancellation():
            result = call()
    except TerminationSignal:
        from prefect._internal import control_listener

        if control_listener.get_intent() != "cancel":  # a plain SIGTERM: let it end us
            raise
        # `promptdag cancel` or the UI's Cancel (promptdag/remote/runs.py): Prefect ended the run
        print("promptdag: the run was cancelled (promptdag cancel, or Cancel in the UI)",
              file=sys.stderr)
        return EXIT_FAILED
    print(result.model_dump_json(indent=2) if as_json else with_url(render(result), result))
    if isinstance(result, WorkflowResult) and result.summary.unsaved_count:
        print(f"promptdag: {safe(unsaved_line(result))}", file=sys.stderr)
    exit_now_if_the_api_is_gone(exit_code(result))
    return exit_code(result)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
