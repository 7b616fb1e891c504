"""`promptdag run` (a spec, or a batch with --data) and `promptdag retry`: workflows run here.

Exit codes: 0 completed, 1 the workflow failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from promptdag.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    exit_code,
    exit_now_if_the_api_is_gone,
    finish,
    load_for_cli,
    quiet_prefect,
    render_summary,
    say,
    use_local_server,
    with_url,
)
from promptdag.cli._execute import execute
from promptdag.engine.objective import ObjectiveResult
from promptdag.engine.results import WorkflowResult
from promptdag.errors import SpecError
from promptdag.llm.batch_api import watch
from promptdag.spec.models import WorkflowSpec


def register(sub: Any) -> None:
    """Add `run` and `retry` to the `promptdag` parser's subparsers."""
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
    run.add_argument("--batch-api", action="store_true",
                     help="with --data: the rows' calls through the provider's batch API, at "
                     "its discount (config batch_api; docs/batch-api.md)")
    run.add_argument(
        "--infer-deps",
        action="store_true",
        help="let the model infer dependencies of tasks without depends_on (seed 002)",
    )

    run.set_defaults(handler=_run)

    retry = sub.add_parser(
        "retry", help="retry a run that did not complete, reusing its finished tasks"
    )
    retry.add_argument("run_id", help="the flow run id (as `run` and `submit` print it)")
    retry.add_argument("--json", action="store_true", help="print only the result JSON")
    retry.add_argument("--wait", action="store_true",
                       help="a deployment run: wait for the worker and print the result")
    retry.add_argument("--verbose", action="store_true", help="show Prefect's own logs")
    retry.set_defaults(handler=_retry)


def _run(args: argparse.Namespace) -> int:
    _check_batch_args(args)
    rows = None
    if args.data:  # the first rows are checked now, the rest as the run reads them
        from promptdag.engine.batch import first_rows

        rows = first_rows(args.data, args.limit)
    spec, _ = load_for_cli(args.spec, args.model, args.breadth, args.infer_deps,
                           check_keys=True, rows=rows)
    if args.fresh:
        spec = spec.model_copy(
            update={"config": spec.config.model_copy(update={"reuse_results": False})}
        )
    if args.batch_api:
        spec = spec.model_copy(update={"config": spec.config.model_copy(
            update={"batch_api": True})})
    quiet_prefect(args.verbose)
    use_local_server(quiet=args.quiet, start=True)
    from promptdag.api import run  # Prefect starts here, only for valid input
    from promptdag.tasks.result_persistence import check_storage

    check_storage()  # full or read-only: one line, exit 2, before the banner
    if rows is not None:
        return _run_batch(args, spec)
    banner = f"Running {spec.name!r}: {len(spec.tasks)} tasks, breadth {spec.config.breadth}"
    return execute(banner, lambda: run(spec, on_notice=say),
                    lambda result: render_summary(result, spec), args.json,
                    args.quiet, total=len(spec.tasks), plain=args.verbose)


def _check_batch_args(args: argparse.Namespace) -> None:
    if not args.data and (args.output or args.limit is not None or args.batch_api):
        raise SpecError("--output, --limit and --batch-api go with --data ROWS_FILE")
    if args.limit is not None and args.limit < 1:
        raise SpecError("--limit must be at least 1")


def _run_batch(args: argparse.Namespace, spec: WorkflowSpec) -> int:
    """One run of the workflow over every row, streamed (promptdag/engine/row_window.py);
    rows reported, and written to --output, as they finish. Cancelled or cut off from its
    server, it ends as a plain run does; an --output that cannot be written is exit 2 with
    how to recover the rows."""
    from promptdag.api import run
    from promptdag.cli._batch_output import RowWriter, rows_line
    from promptdag.cli._execute import CANCELLED, run_cancellable
    from promptdag.cli._progress import choose_mode, show_progress
    from promptdag.engine.batch import count_rows, id_notice
    from promptdag.engine.events import subscribe_rows

    mode = choose_mode(quiet=args.json or args.quiet)
    mode = "plain" if mode == "live" and args.verbose else mode  # Prefect's logs on stderr too
    notice = id_notice(args.data)
    if notice:  # even with --quiet: the rows' names in the output depend on it
        say(notice)
    total = count_rows(args.data, args.limit)
    # plain: a line per row; live: the task bar, with the rows so far under it
    writer = RowWriter(Path(args.output) if args.output else None, total,
                       progress=mode == "plain")
    unsubscribe = subscribe_rows(writer)
    batch_state = _BatchState(say if mode == "plain" else None)
    unwatch = watch(batch_state)
    if mode != "quiet":
        print(f"Running {spec.name!r} over {total if total is not None else 'the'} rows: "
              f"{len(spec.tasks)} tasks a row, breadth {spec.config.breadth}", file=sys.stderr)
    try:
        with show_progress("quiet" if mode == "plain" else mode, title=spec.name,
                           total=(total or 0) * len(spec.tasks) or None,
                           extra=lambda: f"rows: {writer.written}"
                           + (f" of {writer.total}" if writer.total is not None else "")
                           + " done" + (f", {writer.failed} failed" if writer.failed else "")
                           + batch_state.suffix()):
            result = run_cancellable(lambda: run(spec, on_notice=say, data=args.data,
                                                 limit=args.limit, load_rows=False))
    finally:
        unsubscribe()
        unwatch()
        writer.close()
    if result is None:
        kept = f"; {writer.written} finished rows written to {args.output}" if (
            args.output and not writer.error) else ""
        print(f"promptdag: {CANCELLED}{kept}", file=sys.stderr)
        exit_now_if_the_api_is_gone(EXIT_FAILED)
        return EXIT_FAILED
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        lines = [render_summary(result, spec, tasks=False),
                 rows_line(writer.written, writer.failed)]
        if args.output and not writer.error:
            lines.append(f"rows written to {args.output}")
        print(with_url("\n".join(lines), result))
    code = exit_code(result)
    if writer.error:
        code = _output_lost(args.output, writer.error, result)
    exit_now_if_the_api_is_gone(code)
    return code


def _output_lost(output: str, why: str, result: WorkflowResult) -> int:
    """--output could not be written (a full disk): one line saying how to get every row, and
    the run marked so that running the batch again reuses it instead of paying again."""
    from promptdag.cli._common import EXIT_BAD_INPUT

    run_id = result.flow_run_id
    if run_id is not None and not result.warning:
        from promptdag.flows.resume import mark_undelivered

        mark_undelivered(run_id)
    recover = (f"`promptdag result {run_id} --output {output}` recovers every row" if run_id
               else "run the batch again to write them")
    print(f"promptdag: cannot write rows to {output} ({why}): the run's rows are kept; once "
          f"there is space, {recover} (running the batch again reuses them, no row is paid "
          "for twice)", file=sys.stderr)
    return EXIT_BAD_INPUT


class _BatchState:
    """The provider batches a run waits for (batch_api): each state change said on its own line
    (plain progress), the latest under the live bar."""

    def __init__(self, say_line: Any) -> None:
        self.latest: dict[str, str] = {}
        self.say_line = say_line

    def __call__(self, line: str) -> None:
        self.latest[line.split(" ", 2)[1]] = line  # "batch <id> (...)": by batch id
        if self.say_line:
            self.say_line(line)

    def suffix(self) -> str:
        return "".join(f"; {line}" for line in list(self.latest.values())[-2:])


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
