"""`promptdag validate | graph | schema`: a spec checked, drawn and described, with no Prefect.

Exit codes: 0 valid, 2 invalid (one line naming the problem).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from promptdag.cli._common import (
    EXIT_OK,
    find_local_server,
    load_for_cli,
    quiet_prefect,
    read_mapping,
)
from promptdag.cli._terminal import safe
from promptdag.errors import SpecError
from promptdag.spec.fan_out import DEFAULT_ASSUMED_ITEMS
from promptdag.spec.graph import WorkflowGraph
from promptdag.spec.models import WorkflowSpec


def register(sub: Any) -> None:
    """Add `validate`, `graph` and `schema` to the `promptdag` parser's subparsers."""
    validate = sub.add_parser("validate", help="check a spec and print its stages")
    validate.add_argument("spec")
    validate.add_argument("--history", action="store_true",
                          help="estimate each model's latency from past runs on the Prefect "
                          "server (default: offline, from hints and provider defaults)")
    validate.add_argument("--items", type=_items, default=DEFAULT_ASSUMED_ITEMS, metavar="N",
                          help="items each fan-out (for_each) is assumed to yield, for the "
                          f"estimate (default {DEFAULT_ASSUMED_ITEMS})")
    validate.add_argument("--data", metavar="ROWS", help="a batch spec: its rows (.jsonl or "
                          ".csv); every row is checked, the first row's fields are the context "
                          "of the stages shown")

    validate.set_defaults(handler=_validate)

    graph = sub.add_parser("graph", help="print the DAG as a Mermaid diagram")
    graph.add_argument("spec")
    graph.add_argument("--data", metavar="ROWS", help="a batch spec: its rows (.jsonl or "
                       ".csv); the first row's fields are the prompts' context")

    graph.set_defaults(handler=_graph)

    schema = sub.add_parser("schema", help="print the JSON Schema of a spec file (for editors)")
    schema.add_argument("--reference", action="store_true",
                        help="print the field reference as Markdown instead")
    schema.set_defaults(handler=_schema)


def _items(text: str) -> int:
    """`--items N`: a whole number of at least 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("give 0 or more items")
    return value


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
    spec, graph = _load(args)
    path, _ = graph.critical_path()
    fan_outs = f" ({len(graph.fan_outs)} fan out at run time)" if graph.fan_outs else ""
    rows = f" per row; all {args.rows} rows checked" if args.data else ""
    print(
        f"{safe(args.spec)}: valid: {len(graph.names)} tasks{fan_outs}, "
        f"{len(graph.levels())} stages, breadth {spec.config.breadth}{rows}"
    )

    def shown(name: str) -> str:
        each = graph.fan_outs.get(name)
        return safe(name) + (f" (one per item of {safe(each)})" if each else "")

    for i, level in enumerate(graph.levels(), 1):
        print(f"  stage {i}: {', '.join(map(shown, level))}")
    print(f"  critical path ({len(path)} tasks): {' -> '.join(map(safe, path))}")
    from promptdag.engine.estimate import estimate

    found = estimate(spec, graph, _latency_history() if args.history else None,
                     items=args.items)
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


def _load(args: argparse.Namespace) -> tuple[WorkflowSpec, WorkflowGraph]:
    """The spec and its graph; with `--data`, every row's instance checked (as a run checks
    them, keys aside) and the graph of one row's instance, with the first row's fields."""
    if not args.data:
        try:
            return load_for_cli(args.spec)
        except SpecError as exc:
            if "neither a task nor a key of its context" not in str(exc):
                raise
            raise SpecError(f"{exc} (a batch spec? give its rows: {args.command} {args.spec} "
                            "--data ROWS.jsonl)") from None
    from promptdag.engine.batch import read_rows, with_row
    from promptdag.spec.validation import validate_spec

    rows = read_rows(args.data)
    if not rows:
        raise SpecError(f"{args.data}: no rows: a batch needs at least one")
    spec, _ = load_for_cli(args.spec, rows=rows)
    args.rows = len(rows)
    return spec, validate_spec(with_row(spec, rows[0]))


def _graph(args: argparse.Namespace) -> int:
    _, graph = _load(args)
    print(safe(graph.mermaid(), multiline=True))
    return EXIT_OK
