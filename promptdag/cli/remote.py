"""The `promptdag` subcommands that talk to a Prefect server: submit, status, result, server.

`submit` prints the run id alone on stdout (so `RUN=$(promptdag submit spec.yaml)` works) and
where to watch it on stderr; `status` and `result` take that id. With `--data ROWS --shards N`
it submits a batch as N runs and prints their ids, one a line (`RUNS=$(promptdag submit ...)`);
`promptdag result $RUNS --output rows.jsonl` waits for all of them and writes their rows as one
JSONL in row order. Exit codes as for `run`:
0 completed (or, for `status`, found), 1 the run failed, 2 bad input or an environment to fix
(no server, unknown deployment, unknown run: one line saying what to do).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from promptdag.cli._terminal import safe
from promptdag.errors import SpecError

EXIT_OK, EXIT_FAILED = 0, 1


def register(sub: Any) -> None:
    """Add the remote subcommands to the `promptdag` parser's subparsers."""
    submit = sub.add_parser("submit", help="submit a spec (or an objective) to a deployment")
    submit.add_argument("spec", nargs="?", help="spec file (.yaml, .yml or .json)")
    submit.add_argument("--objective", help="submit this objective instead of a spec")
    submit.add_argument("--context-file", help="objective: JSON or YAML context")
    submit.add_argument("--depth", type=int, help="objective: max plan/reflect rounds")
    submit.add_argument("--review", action="store_true", help="objective: wait for approval "
                        "of each plan (promptdag approve/reject RUN, or Resume in the UI)")
    submit.add_argument("--breadth", type=int, help="max tasks running at once")
    submit.add_argument("--model", help='use this model ("provider:model")')
    submit.add_argument("--deployment", help="deployment name, flow/deployment (default: "
                        "run-workflow/workflow, or plan-execute-reflect/objective)")
    submit.add_argument("--data", help="a batch: the workflow once per row of this .jsonl or "
                        ".csv file, as --shards runs")
    submit.add_argument("--batch-api", action="store_true",
                        help="with --data: the rows' calls through the provider's batch API, at "
                        "its discount (config batch_api; docs/batch-api.md)")
    submit.add_argument("--shards", type=int, help="with --data: split the rows into this many "
                        "runs, for as many workers (default 1)")
    submit.add_argument("--limit", type=int, help="with --data: only the first N rows (a trial)")
    submit.add_argument("--wait", action="store_true", help="wait and print the result")
    submit.add_argument("--json", action="store_true", help="print JSON on stdout")

    status = sub.add_parser("status", help="status and progress of a submitted run")
    status.add_argument("run_id")
    status.add_argument("--json", action="store_true", help="print the status JSON")

    result = sub.add_parser("result", help="the result of a submitted run (waits for it); of "
                            "a batch's runs, their rows as one JSONL")
    result.add_argument("run_id", nargs="+", help="a run id; several, or a batch's tag "
                        "(batch:<hex>, as submit prints it): the shards of a batch")
    result.add_argument("--output", help="batch runs: write their rows here, one JSON line "
                        "per row in row order (default with several runs: stdout)")
    result.add_argument("--json", action="store_true", help="print only the result JSON")
    result.add_argument("--no-wait", action="store_true", help="fail at once if not finished")
    result.add_argument("--timeout", type=float, help="give up waiting after this many seconds")

    server = sub.add_parser("server", help="a local Prefect server (and its UI) in the background")
    server.add_argument("action", choices=["start", "stop", "status", "env", "open"])
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, help="default: PROMPTDAG_SERVER_PORT, else 4200")
    for command in (submit, status, result, server):
        command.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    if args.command == "server":
        return _server(args)
    from promptdag.cli._common import quiet_prefect, use_local_server

    quiet_prefect(verbose=False)
    use_local_server(quiet=True)  # no PREFECT_API_URL: the server `server start` left running
    if args.command == "submit":
        return _submit(args)
    if args.command == "status":
        return _status(args)
    return _result(args)


def _submit(args: argparse.Namespace) -> int:
    from promptdag.remote import client

    if bool(args.spec) == bool(args.objective):
        raise SpecError("give a spec file or --objective \"...\" (one of them)")
    if not args.data and (args.shards is not None or args.limit is not None or args.batch_api):
        raise SpecError("--shards, --limit and --batch-api go with --data ROWS_FILE")
    if args.data:
        return _submit_batch(args)
    if args.objective:
        from promptdag.cli._common import read_mapping

        context = read_mapping(args.context_file, "context") if args.context_file else None
        config = {k: v for k, v in (("breadth", args.breadth), ("depth", args.depth),
                                    ("model", args.model), ("review", args.review or None))
                  if v is not None}
        run_id = client.submit_objective(args.objective, context, config or None,
                                         deployment=args.deployment or client.OBJECTIVE_DEPLOYMENT)
    else:
        if args.context_file or args.depth is not None or args.review:
            raise SpecError("--context-file, --depth and --review are for --objective")
        from promptdag.cli._common import load_for_cli

        spec, _ = load_for_cli(args.spec, args.model, args.breadth)
        run_id = client.submit_workflow(spec, deployment=args.deployment
                                        or client.WORKFLOW_DEPLOYMENT)
    url = client.ui_url(run_id)
    if args.wait:
        print(f"submitted {run_id}; waiting (watch it at {url})", file=sys.stderr)
        _say_if_nobody_polls(run_id)
        return _print_result(client.wait_for_result(run_id), args.json, run_id)
    if args.json:
        print(json.dumps({"run_id": str(run_id), "url": url}))
    else:
        print(run_id)
        print(f"watch: {url}\nfollow: promptdag watch {run_id}   "
              f"status: promptdag status {run_id}   result: promptdag result {run_id}",
              file=sys.stderr)
    _say_if_nobody_polls(run_id)
    return EXIT_OK


def _say_if_nobody_polls(run_id: Any) -> None:
    """A deployment's run waits forever if no worker (or `serve`) polls for it: say so."""
    from promptdag.remote.runs import nobody_polling

    if (hint := nobody_polling(run_id)) is not None:
        print(f"promptdag: {hint}", file=sys.stderr)


def _submit_batch(args: argparse.Namespace) -> int:
    """A spec over --data as --shards runs: their ids on stdout, one a line."""
    from promptdag.cli._common import load_for_cli
    from promptdag.remote import client

    if args.objective or args.context_file or args.depth is not None:
        raise SpecError("--data goes with a spec file, not --objective")
    if args.limit is not None and args.limit < 1:
        raise SpecError("--limit must be at least 1")
    from promptdag.engine.batch import read_rows

    rows = read_rows(args.data, args.limit)
    spec, _ = load_for_cli(args.spec, args.model, args.breadth, rows=rows)
    if args.batch_api:
        spec = spec.model_copy(update={"config": spec.config.model_copy(
            update={"batch_api": True})})
    batch = client.submit_batch(spec, rows, shards=args.shards or 1,
                                deployment=args.deployment or client.WORKFLOW_DEPLOYMENT)
    ids = [str(r) for r in batch.run_ids]
    if args.wait:
        print(f"submitted {batch.rows} rows as {len(ids)} runs (tag {batch.tag}); waiting",
              file=sys.stderr)
        return _print_rows(client.wait_for_rows(ids), None)
    if args.json:
        print(json.dumps({"tag": batch.tag, "rows": batch.rows, "run_ids": ids}))
    else:
        print("\n".join(ids))
        print(f"{batch.rows} rows in {len(ids)} runs, tagged {batch.tag}\n"
              f"gather: promptdag result {' '.join(ids)} --output rows.jsonl", file=sys.stderr)
    return EXIT_OK


def _print_rows(rows: list[Any], output: str | None) -> int:
    """Rows as JSONL (to `output`, else stdout), the totals on stderr; exit 1 if any failed."""
    from promptdag.cli._batch_output import rows_line
    from promptdag.remote import client

    if output:
        client.write_rows(rows, output)
    else:
        for row in rows:
            print(row.model_dump_json())
    where = f" -> {output}" if output else ""
    failed = sum(r.status != "completed" for r in rows)
    print(f"{rows_line(len(rows), failed)}{where}", file=sys.stderr)
    return EXIT_OK if all(r.status == "completed" for r in rows) else EXIT_FAILED


def _status(args: argparse.Namespace) -> int:
    from promptdag.remote import client

    status = client.get_status(args.run_id)
    if args.json:
        print(status.model_dump_json(indent=2))
        return EXIT_OK
    depth = f", round {status.current_depth}/{status.max_depth}" if status.max_depth else ""
    failed = f", {status.tasks_failed} failed" if status.tasks_failed else ""
    print(f"{safe(status.name)}: {status.state_name.lower()}: {status.tasks_completed}/"
          f"{status.tasks_total} tasks finished ({status.progress:.0%}{failed}{depth}), "
          f"{status.elapsed_seconds:.1f} s")
    if status.message and status.finished:
        print(f"  {safe(status.message)}")
    if status.url:
        print(f"  {status.url}")
    if status.status == "paused":  # an objective's plan review (flows/review.py)
        print(f"  waiting for review: promptdag approve {status.run_id} [--plan FILE] [--all]"
              f" | promptdag reject {status.run_id}")
    if not status.finished:
        _say_if_nobody_polls(status.run_id)
    return EXIT_OK


def _result(args: argparse.Namespace) -> int:
    from promptdag.remote import client

    batch = len(args.run_id) > 1 or args.output or args.run_id[0].startswith("batch:")
    if batch:  # a batch's runs: their rows, gathered
        if args.json:
            raise SpecError("--json is for one run; a batch's rows are JSON lines already")
        timeout = 0 if args.no_wait else args.timeout  # 0: says which one has not finished
        return _print_rows(client.wait_for_rows(args.run_id, timeout=timeout), args.output)
    if args.no_wait:
        result = client.get_result(args.run_id[0])
    else:
        result = client.wait_for_result(args.run_id[0], timeout=args.timeout)
    return _print_result(result, args.json, args.run_id[0])


def _print_result(result: Any, as_json: bool, run_id: Any) -> int:
    from promptdag.cli._common import render_objective_summary, render_summary
    from promptdag.engine.objective import ObjectiveResult

    if as_json:
        print(result.model_dump_json(indent=2))
    elif isinstance(result, ObjectiveResult):
        print(render_objective_summary(result))
    else:
        from promptdag.cli._common import spec_of_run

        print(render_summary(result, spec_of_run(str(run_id))))
    return EXIT_OK if result.status == "completed" else EXIT_FAILED


def _server(args: argparse.Namespace) -> int:
    """`server start|stop|status|env|open`. Only a process that is still the recorded server
    is signalled or described; a stale record is removed with one line. `status` exits 0 when
    the server answers, 1 when its process is there but does not answer, 2 when none runs."""
    from promptdag.remote import local_server as server

    home = server.prefect_home()
    recorded = server.read_state(home)
    info = server.verified_state(home)
    if recorded is not None and info is None:
        print(f"promptdag: {server.stale_line(home, recorded)}", file=sys.stderr)
    if args.action == "start":
        from promptdag.settings import get_settings

        info = server.start_server(args.host, args.port or get_settings().server_port)
        _with_api(info.api_url, server.ensure_work_pool)
        print(f"Prefect server running: UI {info.url} (pid {info.pid}, log {info.log})",
              file=sys.stderr)
        print(f"Point runs at it in each shell:  eval \"$(promptdag server env)\"\n"
              f"Deploy and serve: prefect deploy --all && "
              f"prefect worker start --pool {server.WORK_POOL}   "
              "(or python -m promptdag.deployments.serve)",
              file=sys.stderr)
        print(_export(info.api_url))
        return EXIT_OK
    if args.action == "stop":
        stopped = info is not None and server.stop_server(info)
        print("server stopped" if stopped else "no promptdag server is running", file=sys.stderr)
        return EXIT_OK
    if info is None:
        raise SpecError("no promptdag server is running: start one with `promptdag server start`")
    if args.action == "env":
        print(_export(info.api_url))
    elif args.action == "open":
        import webbrowser

        print(info.url)
        webbrowser.open(info.url)
    else:
        answers = server.healthy(info.api_url)
        state = "healthy" if answers else "NOT answering"
        print(f"{info.url}: {state} (pid {info.pid}, PREFECT_HOME {info.home}, log {info.log})")
        if not answers:
            print(f"promptdag: the server's process is running but {info.api_url}/health does "
                  f"not answer: see its log {info.log}, or restart it (promptdag server stop; "
                  "promptdag server start)", file=sys.stderr)
            return EXIT_FAILED
    return EXIT_OK


def _export(api_url: str) -> str:
    return f"export PREFECT_API_URL={api_url}"


def _with_api(api_url: str, call: Any) -> Any:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return call()
