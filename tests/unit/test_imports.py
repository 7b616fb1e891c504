"""Imports point one way, by folder: core (spec/, engine/, llm/) <- tasks <- flows <- remote/ (and
the Python API) <- entry points (cli/, deployments/), with no cycle anywhere (lazy
imports inside functions included), and nothing imports the top-level `flows`, `tasks` or
`deployments` names that an installed promptdag does not have (see test_packaging). Prefect's
private modules are imported in promptdag/_prefect_compat.py and nowhere else."""

from __future__ import annotations

import ast
import os
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "promptdag"
COMPAT = PACKAGE / "_prefect_compat.py"
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


def private_prefect_imports(tree: ast.AST) -> list[str]:
    """The Prefect modules or names a parsed file imports that are private: a dotted part, or an
    imported name, that starts with `_` (`prefect._internal`, `prefect.cli.deploy._models`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [n for n in names if n.split(".")[0] == "prefect"
                  and any(part.startswith("_") and not part.endswith("__")  # not __version__
                          for part in n.split(".")[1:])]
    return found


def test_private_prefect_modules_are_imported_in_one_place():
    files = [path for folder in ("promptdag", "flows", "tasks", "deployments", "benchmarks",
                                 "tests")
             for path in (ROOT / folder).rglob("*.py")]  # rglob does not follow the symlinks
    found = {str(path.relative_to(ROOT)): private
             for path in files if path != COMPAT
             if (private := private_prefect_imports(ast.parse(path.read_text())))}
    assert found == {}
    # the rule's own check finds what the compatibility module imports
    assert "prefect._internal.control_listener" in private_prefect_imports(
        ast.parse(COMPAT.read_text()))
