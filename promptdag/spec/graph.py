"""The task graph: dependencies resolved and validated, orders, critical path, Mermaid.

Pure data and iterative algorithms only (no recursion: a 5,000-task chain must not hit the
recursion limit). Every error names the tasks involved and says how to fix it.
"""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promptdag.errors import SpecError
from promptdag.spec.conditions import parse_condition, split_reference
from promptdag.spec.conditions import references as condition_references
from promptdag.spec.fan_out import OUTPUTS, check_for_each, is_item_reference, source_text
from promptdag.spec.models import TaskSpec, TaskType, WorkflowSpec
from promptdag.spec.schemas import has_field, resolve_schema
from promptdag.spec.template import PLACEHOLDER, placeholders


def downstream(
    name: str, dependents: Mapping[str, Iterable[str]], order: Iterable[str]
) -> list[str]:
    """Every task downstream of `name` through `dependents`, in `order`."""
    seen: set[str] = set()
    stack = list(dependents[name])
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(dependents[current])
    return [n for n in order if n in seen]


@dataclass(frozen=True)
class WorkflowGraph:
    """Resolved dependencies of a workflow, in declaration order."""

    names: tuple[str, ...]
    depends_on: Mapping[str, tuple[str, ...]]
    references: Mapping[str, frozenset[str]]
    priority: Mapping[str, int]
    dependents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    conditions: Mapping[str, str] = field(default_factory=dict)
    subworkflows: frozenset[str] = frozenset()
    fan_outs: Mapping[str, str] = field(default_factory=dict)  # task -> `Outline.sections`

    @property
    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def roots(self) -> list[str]:
        return [name for name in self.names if not self.depends_on[name]]

    def descendants(self, name: str) -> list[str]:
        """Every task downstream of `name`, in declaration order."""
        return downstream(name, self.dependents, self.names)

    def ready_key(self, name: str, index: Mapping[str, int]) -> tuple[int, int, str]:
        """Order among tasks ready at once (a heap key): higher priority, then declaration."""
        return (-self.priority[name], index[name], name)

    def topological_order(self) -> list[str]:
        """Dependencies first; among tasks free at once, higher priority, then declaration."""
        index = self.index
        remaining = {name: len(self.depends_on[name]) for name in self.names}
        ready = [self.ready_key(n, index) for n in self.names if remaining[n] == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            _, _, name = heapq.heappop(ready)
            order.append(name)
            for child in self.dependents[name]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    heapq.heappush(ready, self.ready_key(child, index))
        return order

    def levels(self) -> list[list[str]]:
        """Tasks grouped by longest distance from a root: what could run side by side."""
        level: dict[str, int] = {}
        for name in self.topological_order():
            level[name] = max((level[d] + 1 for d in self.depends_on[name]), default=0)
        grouped: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for name in self.names:
            grouped[level[name]].append(name)
        return grouped

    def critical_path(self, weights: Mapping[str, float] | None = None) -> tuple[list[str], float]:
        """The longest chain by total weight (default 1 per task), and that total."""
        weight = weights or {}
        finish: dict[str, float] = {}
        via: dict[str, str | None] = {}
        for name in self.topological_order():
            best = max(self.depends_on[name], key=lambda d: finish[d], default=None)
            finish[name] = (finish[best] if best else 0.0) + float(weight.get(name, 1.0))
            via[name] = best
        if not finish:
            return [], 0.0
        end: str | None = max(self.names, key=lambda n: finish[n])
        total = finish[end] if end else 0.0
        path: list[str] = []
        while end is not None:
            path.append(end)
            end = via[end]
        return path[::-1], total

    def mermaid(self) -> str:
        """A Mermaid flowchart (`graph TD`), as GitHub and Prefect artifacts render it."""
        ids = {name: f"t{i}" for i, name in enumerate(self.names)}
        lines = ["graph TD"]
        for name in self.names:
            label = _mermaid_label(name)
            if name in self.subworkflows:
                shape = f'[["{label}"]]'
            elif name in self.fan_outs:  # one node per item at run time
                each = _mermaid_label(_short(self.fan_outs[name]))
                shape = f'[/"{label} (for each {each})"/]'
            else:
                shape = f'["{label}"]'
            lines.append(f"    {ids[name]}{shape}")
        for name in self.names:
            when = self.conditions.get(name)
            source = self.fan_outs.get(name, "")
            for dep in self.depends_on[name]:
                if source and split_reference(source, {dep}) is not None:
                    field_name = _mermaid_label(source[len(dep) + 1:])
                    lines.append(f'    {ids[dep]} == "each {field_name}" ==> {ids[name]}')
                elif when:  # a branch: dashed, labelled with its condition
                    label = _mermaid_label(_short(PLACEHOLDER.sub(r"\1", when)))
                    lines.append(f'    {ids[dep]} -. "{label}" .-> {ids[name]}')
                else:
                    lines.append(f"    {ids[dep]} --> {ids[name]}")
        return "\n".join(lines)


def _mermaid_label(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;").replace("{", "&#123;").replace("}", "&#125;"))


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _suggest(name: str, candidates: Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _cycle_text(cycle: list[str], limit: int = 8) -> str:
    """'A' -> 'B' -> 'A', shortened in the middle for long cycles."""
    if len(cycle) <= limit + 1:
        return " -> ".join(repr(n) for n in cycle)
    head = " -> ".join(repr(n) for n in cycle[:limit])
    return f"{head} -> ... -> {cycle[-1]!r} (a cycle of {len(cycle) - 1} tasks)"


def _implied_dependencies(tasks: list[TaskSpec]) -> dict[str, list[str]]:
    """Stage rule: consecutive parallel/hybrid tasks form a stage, each sequential task is one;
    a task without explicit `depends_on` depends on every task of the previous stage."""
    implied: dict[str, list[str]] = {}
    previous: list[str] = []
    current: list[str] = []
    current_is_parallel = False
    for task in tasks:
        parallel = task.task_type in (TaskType.PARALLEL, TaskType.HYBRID)
        if not (parallel and current_is_parallel and current):
            if current:
                previous = current
            current = []
        implied[task.name] = list(previous)
        current.append(task.name)
        current_is_parallel = parallel
    return implied


def build_graph(spec: WorkflowSpec) -> WorkflowGraph:
    """Resolve and validate a spec's dependencies; raise SpecError naming the problem."""
    tasks = spec.tasks
    first_at: dict[str, int] = {}
    for i, task in enumerate(tasks):
        if task.name in first_at:
            raise SpecError(
                f"task {task.name!r} is declared twice (tasks #{first_at[task.name] + 1} and "
                f"#{i + 1}); task names must be unique"
            )
        first_at[task.name] = i
    names = tuple(t.name for t in tasks)
    known = set(names)
    implied = _implied_dependencies(tasks)

    schemas: dict[str, dict[str, Any] | None] = {}
    for t in tasks:
        try:
            schemas[t.name] = resolve_schema(t.output_schema) if t.output_schema else None
        except SpecError as exc:
            raise SpecError(f"task {t.name!r}: field 'output_schema': {exc}") from None
    depends_on: dict[str, tuple[str, ...]] = {}
    references: dict[str, frozenset[str]] = {}
    fan_outs = {t.name: source_text(t.for_each) for t in tasks if t.for_each}
    for task in tasks:
        refs = _references(task, known, schemas, fan_outs)
        references[task.name] = frozenset(refs)
        if task.depends_on is None:
            declared = implied[task.name]
        else:
            declared = task.depends_on
            for dep in declared:
                if dep == task.name:
                    raise SpecError(
                        f"task {task.name!r} depends on itself; remove {dep!r} from its depends_on"
                    )
                if dep not in known:
                    raise SpecError(
                        f"task {task.name!r} depends on {dep!r}, which does not exist"
                        f"{_suggest(dep, known)}"
                    )
        depends_on[task.name] = tuple(dict.fromkeys([*declared, *refs]))

    dependents: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for dep in depends_on[name]:
            dependents[dep].append(name)
    graph = WorkflowGraph(
        names=names,
        depends_on=depends_on,
        references=references,
        priority={t.name: t.priority.rank for t in tasks},
        dependents={k: tuple(v) for k, v in dependents.items()},
        conditions={t.name: t.when for t in tasks if t.when},
        subworkflows=frozenset(t.name for t in tasks if t.workflow is not None),
        fan_outs=fan_outs,
    )
    cycle = find_cycle(graph)
    if cycle:
        raise SpecError(
            f"dependency cycle: {_cycle_text(cycle)}; remove one of these dependencies "
            "(or a {{ reference }} that creates it)"
        )
    return graph


def _references(
    task: TaskSpec, known: set[str], schemas: Mapping[str, dict[str, Any] | None],
    fan_outs: Mapping[str, str],
) -> list[str]:
    """Task names a prompt, condition or `for_each` references; context keys are inputs, not
    dependencies (nor are a fan-out's `{{ item }}` and `{{ index }}`)."""
    refs: list[str] = []
    if task.for_each is not None:
        refs.append(check_for_each(task, known, schemas, fan_outs))
    for text in placeholders(task.prompt):
        if task.for_each is not None and is_item_reference(text):
            continue
        in_context = text in task.context
        if text in known and in_context:
            raise SpecError(
                f"task {task.name!r}: {{{{ {text} }}}} is both a task and a key of its context; "
                "rename the context key"
            )
        if in_context:
            continue
        refs.append(_resolve(task, text, "prompt", known, schemas, fan_outs))
    if task.when is not None:
        try:
            tree = parse_condition(task.when)
        except SpecError as exc:
            raise SpecError(f"task {task.name!r}: field 'when': {exc}") from None
        refs.extend(_resolve(task, ref.text, "condition", known, schemas, fan_outs)
                    for ref in condition_references(tree))
    return list(dict.fromkeys(refs))


def _resolve(
    task: TaskSpec, text: str, where: str, known: set[str],
    schemas: Mapping[str, dict[str, Any] | None], fan_outs: Mapping[str, str],
) -> str:
    """The task a `{{ Task }}` or `{{ Task.field }}` reference names, checked."""
    found = split_reference(text, known)
    if found is None:
        pool = known | set(task.context) if where == "prompt" else known
        what = "neither a task nor a key of its context" if where == "prompt" else "not a task"
        raise SpecError(
            f"task {task.name!r}: {where} references {{{{ {text} }}}}, which is {what}"
            f"{_suggest(text.split('.')[0], pool)}"
        )
    name, path = found
    if name == task.name:
        raise SpecError(f"task {task.name!r} references its own result {{{{ {text} }}}}")
    if path and name in fan_outs:
        if path[0] != OUTPUTS:
            raise SpecError(
                f"task {task.name!r}: {where} uses {{{{ {text} }}}}, but {name!r} fans out: "
                f"read its results as {{{{ {name} }}}} (numbered text) or {{{{ {name}.{OUTPUTS} "
                "}}}} (a list)"
            )
    elif path:
        schema = schemas.get(name)
        if schema is None:
            raise SpecError(
                f"task {task.name!r}: {where} uses {{{{ {text} }}}}, but task {name!r} has no "
                "output_schema; give it one to use its fields"
            )
        if not has_field(schema, path):
            fields = ", ".join(sorted(schema.get("properties", {}))) or "none"
            raise SpecError(
                f"task {task.name!r}: {where} uses {{{{ {text} }}}}, but the output_schema of "
                f"{name!r} has no field {'.'.join(path)!r} (fields: {fields})"
            )
    return name


def find_cycle(graph: WorkflowGraph) -> list[str] | None:
    """A dependency cycle as a closed path (first task repeated at the end), or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph.names, white)
    for start in graph.names:
        if colour[start] != white:
            continue
        path = [start]
        iters = [iter(graph.depends_on[start])]
        colour[start] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            if colour[nxt] == grey:
                cycle = path[path.index(nxt) :] + [nxt]
                # Report it in the direction work flows: dependency -> dependent.
                return cycle[::-1]
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                iters.append(iter(graph.depends_on[nxt]))
    return None
