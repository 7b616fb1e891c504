"""Plan review from the command line: `promptdag approve RUN [--plan FILE] [--all]`,
`promptdag reject RUN [--reason TEXT]`, and the terminal of `promptdag objective --review`.

The answers go through Prefect's API (`remote/review_client.py`), exactly as the UI's Resume
form sends them, so any shell can answer any run waiting for review. `objective --review` in a
terminal shows the plan and asks: approve (this round, or all rounds), edit in $EDITOR, run a
plan from a file, or reject; elsewhere (a pipe, CI) it prints the plan, the run's UI address
and the commands that answer it. Exit codes: 0 answered, 2 bad input (not a run waiting for a
review, an unreadable or invalid plan file, no server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import os
import shlex
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from promptdag.cli._terminal import safe
from promptdag.engine.review import (
    ReviewAnswer,
    ReviewRequest,
    add_reviewer,
    parse_tasks,
    plan_json,
)
from promptdag.errors import PromptDagError, SpecError

EXIT_OK = 0


def register(sub: Any) -> None:
    """Add `approve` and `reject` to the `promptdag` parser's subparsers."""
    approve = sub.add_parser("approve", help="approve the plan of a run waiting for review")
    approve.add_argument("run_id", help="the objective's flow run id")
    approve.add_argument("--plan", help="run this plan instead: a JSON or YAML file of tasks "
                         "({name, prompt, depends_on}), as a list or under `tasks`")
    approve.add_argument("--all", action="store_true",
                         help="also approve every later round's plan without asking")
    reject = sub.add_parser("reject", help="reject the plan of a run waiting for review: the "
                            "run ends (stop_reason: rejected) without running it")
    reject.add_argument("run_id", help="the objective's flow run id")
    reject.add_argument("--reason", default="", help="why (kept in the run's result)")
    for command in (approve, reject):
        command.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    from promptdag.cli._common import quiet_prefect, use_local_server
    from promptdag.remote.review_client import answer_review

    quiet_prefect(verbose=False)
    use_local_server(quiet=True)  # the server in use; never start one to answer a run
    if args.command == "reject":
        answer = ReviewAnswer(decision="reject", reason=args.reason)
        answer_review(args.run_id, answer)
        print(f"run {args.run_id}: plan rejected; the run ends without running it",
              file=sys.stderr)
        return EXIT_OK
    answer = ReviewAnswer(decision="approve", approve_all=args.all)
    if args.plan:
        answer = ReviewAnswer(decision="edit", tasks=plan_json(read_plan(args.plan)),
                              approve_all=args.all)
    answer_review(args.run_id, answer)
    what = "your plan" if args.plan else "the plan"
    later = " (and every later round's)" if args.all else ""
    print(f"run {args.run_id}: approved {what}{later}; follow it with "
          f"`promptdag watch {args.run_id}`", file=sys.stderr)
    return EXIT_OK


def read_plan(path: str) -> list[Any]:
    """A plan file (JSON or YAML: a list of tasks or `{tasks: [...]}`), shape-checked here;
    the run checks its graph (an invalid one is refused there and the run waits again)."""
    import json

    import yaml

    from promptdag.spec.input_limits import load_yaml, read_text

    text = read_text(Path(path), "plan")
    try:
        data = json.loads(text) if path.lower().endswith(".json") else load_yaml(text, path)
    except (RecursionError, ValueError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"{path}: cannot read the plan: {first}") from None
    try:
        return parse_tasks(data)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


# -- the terminal of `promptdag objective --review` ----------------------------------------


def watch_reviews(interactive: bool) -> Callable[[], None]:
    """Show each plan waiting for review of a run in this process; in a terminal, ask for the
    answer and send it. Returns the function that stops watching."""

    def reviewer(request: ReviewRequest) -> None:  # called in the flow: must not block
        if not interactive:
            _say_how_to_answer(request)
            return
        context = contextvars.copy_context()
        threading.Thread(target=context.run, args=(_ask, request), daemon=True,
                         name="promptdag-review").start()

    return add_reviewer(reviewer)


def _print(text: str = "") -> None:
    print(text, file=sys.stderr, flush=True)


def _show(request: ReviewRequest) -> None:
    _print()
    if request.error:
        _print(f"promptdag: the edited plan was not accepted: {safe(request.error)}")
    _print(safe(request.text, multiline=True))
    from promptdag.cli._progress import run_url

    if url := run_url(request.flow_run_id):
        _print(f"review it in the UI too: {url}")


def _say_how_to_answer(request: ReviewRequest) -> None:
    _show(request)
    run = request.flow_run_id
    _print(f"the run is waiting for review: `promptdag approve {run} [--plan FILE] [--all]` "
           f"or `promptdag reject {run}` (or Resume in the UI)")


def _ask(request: ReviewRequest) -> None:
    """Ask until there is an answer, then send it (a thread of its own: the run waits)."""
    from promptdag.remote.review_client import aanswer_in_process

    _show(request)
    while True:
        sys.stderr.write("approve? [y]es, [a]ll rounds, [e]dit in $EDITOR, [f]ile PATH, "
                         "[r]eject: ")
        sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:  # stdin closed: someone else answers
            _say_how_to_answer(request)
            return
        try:
            answer = _answer(line.strip(), request)
        except PromptDagError as exc:
            _print(f"promptdag: {safe(exc)}")
            continue
        if answer is None:
            continue
        try:
            asyncio.run(aanswer_in_process(request.flow_run_id, answer, request.key or None))
        except PromptDagError as exc:
            _print(f"promptdag: the answer was not sent: {safe(exc)}")
        return


def _answer(line: str, request: ReviewRequest) -> ReviewAnswer | None:
    choice, _, rest = line.partition(" ")
    choice = choice.lower()
    if choice in ("y", "yes", "approve", ""):
        return ReviewAnswer(decision="approve")
    if choice in ("a", "all"):
        return ReviewAnswer(decision="approve", approve_all=True)
    if choice in ("r", "reject", "n", "no"):
        return ReviewAnswer(decision="reject", reason=rest.strip() or "rejected at the terminal")
    if choice in ("f", "file"):
        if not rest.strip():
            raise SpecError("give the plan file: f PATH")
        return ReviewAnswer(decision="edit", tasks=plan_json(read_plan(rest.strip())))
    if choice in ("e", "edit"):
        return ReviewAnswer(decision="edit", tasks=plan_json(_edit(request.plan)))
    _print("answer y, a, e, f PATH or r")
    return None


def _edit(plan: str) -> list[Any]:
    """The plan opened in $VISUAL or $EDITOR (default vi) as JSON; the saved text, checked."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="promptdag-plan-",
                                     delete=False) as file:
        file.write(plan + "\n")
    try:
        done = subprocess.run([*shlex.split(editor), file.name], check=False)
        if done.returncode != 0:
            raise SpecError(f"the editor ({editor}) exited with {done.returncode}: "
                            "nothing was sent")
        return parse_tasks(Path(file.name).read_text())
    finally:
        os.unlink(file.name)
