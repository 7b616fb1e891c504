"""`promptdag objective`: plan, execute and reflect on an objective, here.

Exit codes: 0 completed, 1 failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from promptdag.cli import review as cli_review
from promptdag.cli._common import (
    quiet_prefect,
    read_mapping,
    render_objective_summary,
    say,
    use_local_server,
)
from promptdag.cli._execute import execute
from promptdag.errors import SpecError


def register(sub: Any) -> None:
    """Add `objective` to the `promptdag` parser's subparsers."""
    objective = sub.add_parser("objective", help="plan, execute and reflect on an objective")
    objective.add_argument("objective", nargs="?", help="what you want done")
    objective.add_argument("--request", help="a seed plan-execute request body (JSON or YAML)")
    objective.add_argument("--context-file", help="JSON or YAML with context (e.g. focus_areas)")
    objective.add_argument("--breadth", type=int, help="max tasks running at once")
    objective.add_argument("--depth", type=int, help="max plan/reflect rounds")
    objective.add_argument("--model", help='model for every role ("provider:model")')
    objective.add_argument("--max-tokens", type=int, metavar="N",
                           help="output-token limit of every call (tasks and roles; a plan "
                           "gets at least enough for its tasks)")
    objective.add_argument("--temperature", type=float, metavar="T",
                           help="sampling temperature of every call")
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
    objective.set_defaults(handler=_objective)


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
                                   ("model", args.model), ("review", args.review or None),
                                   ("max_tokens", args.max_tokens),
                                   ("temperature", args.temperature))
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
        return execute(banner, lambda: run_objective(request, fresh=args.fresh, on_notice=say),
                        render_objective_summary, args.json, args.quiet,
                        plain=asking or args.verbose)
    finally:
        if stop:
            stop()
