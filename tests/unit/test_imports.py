"""Imports point one way: core <- tasks <- flows <- entry points, with no cycle anywhere (lazy
imports inside functions included), and nothing imports the top-level `flows`, `tasks` or
`deployments` names that an installed promptdag does not have (see test_packaging)."""

from __future__ import annotations

import ast
import os
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "promptdag"
ENTRY_POINTS = {
    "promptdag", "promptdag.api", "promptdag.client", "promptdag.server", "promptdag.autoserver",
    "promptdag.runs", "promptdag.progress", "promptdag.review_client", "promptdag.cli",
    "promptdag.cli_common", "promptdag.cli_remote", "promptdag.cli_runs", "promptdag.cli_review",
}
LAYERS = {"core": 0, "tasks": 1, "flows": 2, "entry point": 3}


def modules() -> dict[str, Path]:
    found = {}
    paths = [Path(folder) / file  # promptdag/flows etc. are symlinks to the top-level dirs
             for folder, _, files in os.walk(PACKAGE, followlinks=True)
             for file in files if file.endswith(".py")]
    for path in paths:
        parts = ("promptdag", *path.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def layer(module: str) -> str:
    if module in ENTRY_POINTS or module.startswith("promptdag.deployments"):
        return "entry point"
    if module.startswith("promptdag.flows"):
        return "flows"
    if module.startswith("promptdag.tasks"):
        return "tasks"
    return "core"


def imports() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                top = target.split(".")[0]
                assert top not in {"flows", "tasks", "deployments", "benchmarks"}, (
                    f"{name} imports {target}: write promptdag.{target}")
                if target in known and target != name:
                    edges[name].add(target)
    return edges


def test_no_import_runs_upward():
    upward = sorted(f"{a} ({layer(a)}) -> {b} ({layer(b)})"
                    for a, targets in imports().items() for b in targets
                    if LAYERS[layer(b)] > LAYERS[layer(a)])
    assert upward == []


def test_there_is_no_import_cycle():
    edges = imports()
    cycles: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target):], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = 2

    for module in sorted(modules()):
        if module not in state:
            visit(module)
    assert cycles == []
