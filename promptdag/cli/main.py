"""The `promptdag` command: one parser, each command group registering its own subcommands
(workflow: run, retry; spec: validate, graph, schema; objective; remote: submit, status,
result, server; runs: runs, logs, cancel, watch; review: approve, reject).

Exit codes: 0 completed/valid, 1 the workflow failed, 2 bad input (one line on stderr, no
traceback), 3 internal error (a bug: one line; PROMPTDAG_DEBUG=1 shows the traceback),
130 interrupted. Prefect is imported only when a run starts, so validation is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from promptdag.cli import objective, remote, review, runs, spec, workflow
from promptdag.cli._common import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK
from promptdag.cli._terminal import safe
from promptdag.errors import PromptDagError

GROUPS = (workflow, objective, spec, remote, runs, review)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors are bad input too: exit 2, one line
        self.exit(EXIT_BAD_INPUT, f"promptdag: {message} (see promptdag --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="promptdag", description="Run DAGs of LLM prompts on Prefect.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in GROUPS:
        group.register(sub)  # each sets `handler` on the subcommands it adds
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
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


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
