"""Imports point one way, by folder: core (spec/, engine/, llm/) <- tasks <- flows <- remote/ (and
the Python API) <- entry points (cli/, deployments/), with no cycle anywhere (lazy
imports inside functions included), and nothing imports the top-level `flows`, `tasks` or
`deployments` names that an installed promptdag does not have (see test_packaging)."""

from __future__ import annotations

import ast
import os
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).parents[2] / "promptdag"
# The rule by folder, lowest first: a module may import its own layer and the layers below it.
LAYERS = {"core": 0, "tasks": 1, "flows": 2, "remote": 3, "entry point": 4}
CORE = ("promptdag.spec", "promptdag.engine", "promptdag.llm", "promptdag.errors",
        "promptdag.settings", "promptdag._prefect_compat")


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
    """promptdag.spec, .engine and .llm (and the errors and settings every layer shares) are the
    core; then tasks, flows, remote (a Prefect server, and the Python API beside it); the command
    line, deployments and the package's front door are entry points."""
    def under(*prefixes: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)
    if under(*CORE):
        return "core"
    if under("promptdag.tasks"):
        return "tasks"
    if under("promptdag.flows"):
        return "flows"
    if under("promptdag.remote", "promptdag.api"):
        return "remote"
    assert under("promptdag", "promptdag.cli", "promptdag.deployments"), module
    return "entry point"


def imports() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from package import module` imports the module, not the package's own code
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known
                           else node.module for a in node.names]
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
