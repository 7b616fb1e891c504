"""`promptdag runs | logs | cancel | watch`: find and steer runs through Prefect's API
(remote/runs.py). Any run of promptdag's flows: run here, submitted, or started from the UI.

Exit codes: 0 found / done (`watch`: the run completed), 1 `watch` saw the run fail or be
cancelled, 2 no server, an unknown run, or nothing to cancel (one line saying what to do).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from promptdag.cli._terminal import safe

EXIT_OK, EXIT_FAILED = 0, 1


def register(sub: Any) -> None:
    """Add the run-steering subcommands to the `promptdag` parser's subparsers."""
    runs = sub.add_parser("runs", help="started runs (running first, then finished, newest "
                          "first): workflow, state, tasks, start, duration, tokens, cost, id")
    runs.add_argument("--limit", "-n", type=int, default=20, help="how many (default 20)")
    runs.add_argument("--name", help="only runs whose name contains this text")
    runs.add_argument("--scheduled", action="store_true",
                      help="the runs not started yet instead (a schedule's), next due first")
    runs.add_argument("--json", action="store_true", help="print them as a JSON list")

    logs = sub.add_parser("logs", help="a run's log lines (its tasks' and rounds' too), each "
                          "with the task (or run) it came from")
    logs.add_argument("run_id")
    logs.add_argument("--tail", "-n", type=int, help="only the last N lines")
    logs.add_argument("--json", action="store_true", help="one JSON object a line")

    cancel = sub.add_parser("cancel", help="stop a run (local or submitted)")
    cancel.add_argument("run_id")
    cancel.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for it to stop (default 30)")

    watch = sub.add_parser("watch", help="live progress of any run until it ends, then its "
                           "summary")
    watch.add_argument("run_id")
    watch.add_argument("--quiet", "-q", action="store_true", help="no progress: only the end")
    watch.add_argument("--json", action="store_true", help="at the end, the result JSON")
    for command in (runs, logs, cancel, watch):
        command.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from promptdag.cli._common import quiet_prefect, use_local_server

    quiet_prefect(verbose=False)
    use_local_server(quiet=True)  # no PREFECT_API_URL: the local server promptdag started
    return {"runs": _runs, "logs": _logs, "cancel": _cancel, "watch": _watch}[args.command](args)


def _runs(args: argparse.Namespace) -> int:
    from promptdag.remote import runs

    found = runs.list_runs(limit=args.limit, name=args.name, scheduled=args.scheduled)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return EXIT_OK
    if not found:
        print("no scheduled runs" if args.scheduled else "no runs yet: `promptdag run SPEC` "
              "or `promptdag submit SPEC` make some (`--scheduled` lists runs not started)",
              file=sys.stderr)
        return EXIT_OK
    when = "due" if args.scheduled else "started"
    print(f"{'workflow':<30}  {'state':<11}  {'tasks':>7}  {when:<16}  {'time':>8}  "
          f"{'tokens':>9}  {'cost':>8}  id")
    for r in found:
        moment = r.scheduled_for if args.scheduled else r.started_at
        at = moment.astimezone().strftime("%Y-%m-%d %H:%M") if moment else "-"
        tokens = f"{r.input_tokens + r.output_tokens:,}" if r.input_tokens is not None and (
            r.output_tokens is not None) else "-"
        cost = f"${r.cost_usd:.4f}" if r.cost_usd is not None else "-"
        took = f"{r.duration_seconds:.1f}s" if r.duration_seconds is not None else "-"
        name = safe(r.workflow)
        name = name if len(name) <= 30 else name[:27] + "..."
        print(f"{name:<30}  {r.state:<11}  {f'{r.tasks_done}/{r.tasks_total}':>7}  "
              f"{at:<16}  {took:>8}  {tokens:>9}  {cost:>8}  {r.run_id}")
    return EXIT_OK


def _logs(args: argparse.Namespace) -> int:
    from promptdag.remote import runs

    lines = runs.read_logs(args.run_id, limit=args.tail)
    for line in lines:
        if args.json:
            print(line.model_dump_json())
        else:
            when = line.timestamp.astimezone().strftime("%H:%M:%S.%f")[:-3]
            source = line.task or line.run or "-"  # the task, else the (sub)flow run
            print(f"{when} {line.level:<8} [{safe(source)}] {safe(line.message, multiline=True)}")
    if not lines and not args.json:
        print(f"no log lines for run {args.run_id} (yet)", file=sys.stderr)
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    from promptdag.remote import runs

    print(f"cancelling run {args.run_id}...", file=sys.stderr)
    state = runs.cancel(args.run_id, wait_seconds=args.timeout)
    if state == "Cancelled":
        print(f"run {args.run_id} cancelled")
        return EXIT_OK
    print(f"run {args.run_id} is {state}: it stops when whoever runs it (a worker, or the "
          f"`promptdag run` process) sees the request; follow it with "
          f"`promptdag watch {args.run_id}`")
    return EXIT_OK


def _watch(args: argparse.Namespace) -> int:
    from promptdag.cli._common import finish
    from promptdag.cli._progress import choose_mode, show_progress
    from promptdag.engine.events import emit
    from promptdag.remote import runs

    mode = choose_mode(quiet=args.quiet or args.json)
    if mode != "quiet":
        print(f"watching run {args.run_id} (Ctrl-C stops watching, not the run)",
              file=sys.stderr)
        if (hint := runs.nobody_polling(args.run_id)) is not None:
            print(f"promptdag: {hint}", file=sys.stderr)
    with show_progress(mode, title="run"):
        run = runs.watch(args.run_id, on_event=emit)
    result = runs.result_of(run)
    if result is not None:
        return finish(result, args.json)
    why = f": {safe(run.state.message)}" if run.state and run.state.message else ""
    print(f"{safe(run.name)}: {(run.state_name or 'ended').upper()}{why}")
    from promptdag.cli._progress import run_url

    if url := run_url(str(run.id)):
        print(f"view: {url}")
    return EXIT_OK if run.state_name == "Completed" else EXIT_FAILED
