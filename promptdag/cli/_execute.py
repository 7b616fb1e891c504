"""Running a workflow or an objective with live progress, then its JSON or summary: what
`run` and `objective` share."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from promptdag.cli._common import (
    EXIT_FAILED,
    exit_code,
    exit_now_if_the_api_is_gone,
    unsaved_line,
    with_url,
)
from promptdag.cli._terminal import safe
from promptdag.engine.objective import ObjectiveResult
from promptdag.engine.results import WorkflowResult

R = TypeVar("R", WorkflowResult, ObjectiveResult)
T = TypeVar("T")


def execute(banner: str, call: Callable[[], R], render: Callable[[R], str], as_json: bool,
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
    with show_progress(mode, title=banner.split(":")[0], total=total):
        result = run_cancellable(call)
    if result is None:
        print(f"promptdag: {CANCELLED}", file=sys.stderr)
        return EXIT_FAILED
    print(result.model_dump_json(indent=2) if as_json else with_url(render(result), result))
    if isinstance(result, WorkflowResult) and result.summary.unsaved_count:
        print(f"promptdag: {safe(unsaved_line(result))}", file=sys.stderr)
    exit_now_if_the_api_is_gone(exit_code(result))
    return exit_code(result)


CANCELLED = "the run was cancelled (promptdag cancel, or Cancel in the UI)"


def run_cancellable(call: Callable[[], T]) -> T | None:
    """`call()`, stopped as a worker's run is when `promptdag cancel` (or the UI's Cancel)
    puts the run in Cancelling (promptdag/remote/runs.py `honour_cancellation`): Prefect's
    engine then ends the run Cancelled. None when it was cancelled; a plain SIGTERM still
    ends the process."""
    from prefect.exceptions import TerminationSignal

    from promptdag.remote.runs import honour_cancellation

    try:
        with honour_cancellation():
            return call()
    except TerminationSignal:
        from promptdag._prefect_compat import cancel_was_intended

        if not cancel_was_intended():
            raise
        return None
