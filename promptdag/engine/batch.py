"""Batch runs: one workflow over many rows of data (`promptdag run SPEC --data rows.jsonl`).

Each row becomes one instance of the workflow inside one run: its tasks are named
`[<row id>] <task>` (the row's `id` field, else its index), their dependencies stay within the
row, and the row's fields are usable as `{{ field }}` in every prompt and condition (a row's
field wins over a task's `context` value of the same name). All rows' tasks then form one DAG
for the one scheduler: one ready set and one `breadth` for the whole batch, no barrier between
rows, and a row that fails only skips its own dependents (`skip_dependents`, the default).

Pure: rows in, an expanded `WorkflowSpec` and the row map out; the flow does the running.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from promptdag.engine.results import RowResult, TaskResult, workflow_status
from promptdag.errors import SpecError
from promptdag.llm.base import Usage
from promptdag.spec.conditions import split_reference
from promptdag.spec.fan_out import is_item_reference, source_text
from promptdag.spec.graph import WorkflowGraph, build_graph
from promptdag.spec.models import TaskSpec, WorkflowSpec
from promptdag.spec.template import PLACEHOLDER, placeholders

Row = dict[str, Any]


@dataclass(frozen=True)
class BatchRow:
    """One row's instance of the workflow: its id, index and task names (original -> run)."""

    id: str
    index: int
    tasks: dict[str, str]
    finals: tuple[str, ...]


@dataclass(frozen=True)
class Batch:
    spec: WorkflowSpec
    rows: tuple[BatchRow, ...]

    def row_of(self) -> dict[str, tuple[BatchRow, str]]:
        """Run task name -> (its row, the workflow's task name)."""
        return {run: (row, task) for row in self.rows for task, run in row.tasks.items()}


def iter_rows(path: str | Path, limit: int | None = None) -> Iterator[Row]:
    """Rows of a `.jsonl` file (one JSON object a line) or a `.csv` file (a header line), read
    one at a time (a 200,000-row file is never held whole); a UTF-8 byte order mark is dropped.
    SpecError naming the line for anything else; a line is at most PROMPTDAG_MAX_CONTEXT_BYTES
    (a row is a context)."""
    from promptdag.settings import get_settings
    from promptdag.spec.input_limits import open_text

    file = Path(path)
    handle = open_text(file, "data", get_settings().max_data_bytes, "max_data_bytes")
    try:
        with handle:
            yield from _parse(file, handle, limit)
    except UnicodeDecodeError as exc:
        raise SpecError(f"{file}: cannot read: not UTF-8 text (byte {exc.start})") from None


def _parse(file: Path, handle: IO[str], limit: int | None) -> Iterator[Row]:
    from promptdag.spec.input_limits import current_limits

    if file.suffix.lower() == ".csv":
        for count, row in enumerate(csv.DictReader(handle), 1):
            yield {k: v for k, v in row.items() if k is not None}
            if limit is not None and count >= limit:
                return
        return
    line_limit = current_limits().context_bytes + 2  # characters: a row is a context
    count = number = 0
    while line := handle.readline(line_limit):
        number += 1
        if len(line) >= line_limit and not line.endswith("\n"):
            raise SpecError(f"{file}: line {number}: longer than a row may be "
                            "(PROMPTDAG_MAX_CONTEXT_BYTES)")
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SpecError(f"{file}: line {number}: invalid JSON: {exc.msg}") from None
        if not isinstance(row, dict):
            raise SpecError(f"{file}: line {number}: a row must be a JSON object")
        yield row
        count += 1
        if limit is not None and count >= limit:
            return


def read_rows(path: str | Path, limit: int | None = None) -> list[Row]:
    """Every row of a data file (`iter_rows`), as a list; SpecError when there is none."""
    rows = list(iter_rows(path, limit))
    if not rows:
        raise SpecError(f"{path}: no rows (expected .jsonl lines of JSON objects, or a .csv)")
    return rows


def count_rows(path: str | Path, limit: int | None = None) -> int | None:
    """About how many rows a data file holds (its lines; a CSV's less its header), for the
    progress display only: counted in binary, without parsing."""
    try:
        with Path(path).open("rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
            handle.seek(max(0, handle.tell() - 1))
            lines += handle.read(1) not in (b"\n", b"")  # a last line with no newline
    except OSError:
        return None
    lines -= str(path).lower().endswith(".csv")
    return min(lines, limit) if limit is not None else lines


def csv_columns(path: str | Path) -> list[str] | None:
    """The header of a `.csv` data file (BOM dropped); None for other files."""
    file = Path(path)
    if file.suffix.lower() != ".csv":
        return None
    with file.open(encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle), [])


def id_notice(path: str | Path) -> str | None:
    """One line when a `.csv` file has no `id` column (its rows are then named by position)."""
    columns = csv_columns(path)
    if columns is None or "id" in columns:
        return None
    near = [c for c in columns if c.strip().lower() == "id"]
    hint = (f"; rename {near[0]!r} to 'id' to name rows by it" if near
            else "; add an 'id' column to name them")
    shown = ", ".join(repr(c) for c in columns[:8]) + (", ..." if len(columns) > 8 else "")
    return (f"{path} has no 'id' column (columns: {shown}): rows are named by their "
            f"position (0, 1, ...){hint}")


def row_id(row: Row, index: int) -> str:
    """The row's `id` field (made safe for a task name), else its index."""
    value = row.get("id")
    if value is None or value == "":
        return str(index)
    return re.sub(r"[{}\n\r\t\]\[]", "_", str(value)).strip()[:60] or str(index)


def run_name(rid: str, task: str) -> str:
    return f"[{rid}] {task}"


@dataclass(frozen=True)
class RowInstance:
    """One row's tasks, ready to schedule: its `BatchRow`, its task specs and its own graph
    (the workflow's, with the row's task names)."""

    row: BatchRow
    tasks: tuple[TaskSpec, ...]
    graph: WorkflowGraph


class RowPlan:
    """What every row shares, worked out once: the workflow's graph, the fields its prompts
    use; `instance` then makes one row's tasks (rows share one structure)."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.names = {t.name for t in spec.tasks}
        self.needs = {t.name: _field_uses(t, self.names) for t in spec.tasks}
        used = set().union(*self.needs.values())
        # the workflow's own graph, with every field a prompt uses known
        self.template = _with_context(spec, dict.fromkeys(used, ""))  # what is validated
        self.graph = build_graph(self.template)
        self.finals = tuple(n for n in self.graph.names if not self.graph.dependents[n])

    def instance(self, row: Row, index: int) -> RowInstance:
        """The row's tasks; SpecError for a row that lacks a field a prompt uses or has a
        field named like a task."""
        from promptdag.spec.input_limits import check_context

        rid = row_id(row, index)
        check_context(row, f"row {rid!r}")
        clash = sorted(set(row) & self.names)
        if clash:
            raise SpecError(f"row {rid!r}: data field {clash[0]!r} is also a task name; "
                            "rename one of them")
        tasks = []
        for task in self.spec.tasks:
            missing = sorted(self.needs[task.name] - set(row) - set(task.context))
            if missing:
                raise SpecError(f"row {rid!r}: field {missing[0]!r} is missing "
                                f"(task {task.name!r} uses it)")
            tasks.append(_instance(task, rid, row, self.names, self.graph.depends_on[task.name]))
        mapping = {t.name: run_name(rid, t.name) for t in self.spec.tasks}
        return RowInstance(BatchRow(rid, index, mapping, self.finals), tuple(tasks),
                           _renamed(self.graph, mapping, tasks))


def _renamed(graph: WorkflowGraph, to: dict[str, str], tasks: list[TaskSpec]) -> WorkflowGraph:
    """The workflow's graph under a row's task names (conditions and fan-outs as the row's
    tasks say)."""
    return WorkflowGraph(
        names=tuple(to[n] for n in graph.names),
        depends_on={to[n]: tuple(to[d] for d in deps) for n, deps in graph.depends_on.items()},
        references={to[n]: frozenset(to.get(r, r) for r in refs)
                    for n, refs in graph.references.items()},
        priority={to[n]: p for n, p in graph.priority.items()},
        dependents={to[n]: tuple(to[d] for d in deps) for n, deps in graph.dependents.items()},
        conditions={t.name: t.when for t in tasks if t.when},
        subworkflows=frozenset(to[n] for n in graph.subworkflows),
        fan_outs={t.name: source_text(t.for_each) for t in tasks if t.for_each},
    )


def expand(spec: WorkflowSpec, rows: list[Row], offset: int = 0) -> Batch:
    """Every row's instance of `spec` as one spec (a shard submitted to a worker, a check of
    every row); SpecError for a bad row (`RowPlan.instance`) or two rows with one id."""
    if not rows:
        raise SpecError("a batch needs at least one row")
    plan = RowPlan(spec)
    seen: dict[str, int] = {}
    tasks: list[TaskSpec] = []
    batch_rows: list[BatchRow] = []
    for position, row in enumerate(rows):
        made = plan.instance(row, offset + position)
        if made.row.id in seen:
            raise SpecError(f"rows {seen[made.row.id]} and {made.row.index} have the same id "
                            f"{made.row.id!r}")
        seen[made.row.id] = made.row.index
        tasks += made.tasks
        batch_rows.append(made.row)
    return Batch(spec.model_copy(update={"tasks": tasks}), tuple(batch_rows))


def with_row(spec: WorkflowSpec, row: Row) -> WorkflowSpec:
    """The workflow as one row's instance sees it, under its own task names: the row's fields
    in every task's context (`validate --data` and `graph --data` show this)."""
    tasks = [t.model_copy(update={"context": {**t.context, **row}}) for t in spec.tasks]
    return spec.model_copy(update={"tasks": tasks})


def _with_context(spec: WorkflowSpec, values: Row) -> WorkflowSpec:
    tasks = [t.model_copy(update={"context": {**values, **t.context}}) for t in spec.tasks]
    return spec.model_copy(update={"tasks": tasks})


def _field_uses(task: TaskSpec, names: set[str]) -> set[str]:
    """Placeholders of a task's prompt and condition that are not task results."""
    used = placeholders(task.prompt) + placeholders(task.when or "")
    return {name for name in used if split_reference(name, names) is None
            and not (task.for_each and is_item_reference(name))}


def _instance(
    task: TaskSpec, rid: str, row: Row, names: set[str], depends_on: tuple[str, ...]
) -> TaskSpec:
    context = {**task.context, **row}

    def rename(text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in context:
                return match.group(0)
            found = split_reference(name, names)
            if found is None:
                return match.group(0)
            ref = run_name(rid, found[0]) + "".join(f".{part}" for part in found[1])
            return "{{ " + ref + " }}"

        return PLACEHOLDER.sub(replace, text)

    return task.model_copy(update={
        "name": run_name(rid, task.name),
        "prompt": rename(task.prompt),
        "when": rename(task.when) if task.when else None,
        "for_each": rename(task.for_each) if task.for_each else None,
        "depends_on": [run_name(rid, dep) for dep in depends_on],
        "context": context,
    })


def validate_batch(spec: WorkflowSpec, rows: list[Row], check_keys: bool = True) -> Batch:
    """Check a batch before it runs: the workflow and each row within the input limits
    (spec/input_limits.py: the batch as a whole is as big as its data), every row's instance
    as a spec (fields, names, models, keys)."""
    from promptdag.spec.input_limits import check_context, check_spec
    from promptdag.spec.validation import validate_spec

    check_spec(spec)
    for index, row in enumerate(rows):
        check_context(row, f"row {index}")
    batch = expand(spec, rows)
    validate_spec(batch.spec, check_keys=check_keys, bounded=False)
    return batch


FIRST_ROWS = 16  # a streamed file's rows checked before anything runs


def check_first_rows(spec: WorkflowSpec, path: str | Path, limit: int | None = None,
                     check_keys: bool = True) -> Batch:
    """Check a data file before its batch runs: its first rows (`validate_batch`), so a file
    that does not fit the workflow is refused at once; later rows are checked as they are read
    (a bad one is then a failed row, engine/row_window.py)."""
    return validate_batch(spec, first_rows(path, limit), check_keys=check_keys)


def first_rows(path: str | Path, limit: int | None = None) -> list[Row]:
    """A data file's first rows, the ones checked before a streamed batch runs; SpecError when
    it has none."""
    first = list(itertools.islice(iter_rows(path, limit), FIRST_ROWS))
    if not first:
        raise SpecError(f"{path}: no rows (expected .jsonl lines of JSON objects, or a .csv)")
    return first


def row_result(
    row: BatchRow, results: dict[str, TaskResult],
    instances: Mapping[str, list[TaskResult]] | None = None,
) -> RowResult:
    """A row's outcome from its tasks' results (by run name) and its fan-outs' instances
    (by fan-out run name: they count in its usage and errors)."""
    mine = [results[run] for run in row.tasks.values() if run in results]
    extra = [i for run in row.tasks.values() for i in (instances or {}).get(run, ())]
    usage = Usage()
    for task in mine + extra:
        usage = usage + task.usage
    error = next((f"{t.name}: {t.error}" for t in extra + mine if t.status == "failed"), None)
    finals = {task: results.get(row.tasks[task]) for task in row.finals}
    complete = len(mine) == len(row.tasks)
    return RowResult(
        id=row.id,
        index=row.index,
        status=workflow_status(mine) if complete else "failed",
        results={task: r.result if r else None for task, r in finals.items()},
        outputs={task: r.output for task, r in finals.items() if r and r.output is not None},
        usage=usage,
        error=error,
    )
