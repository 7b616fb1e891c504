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
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptdag.engine.results import RowResult, TaskResult, workflow_status
from promptdag.errors import SpecError
from promptdag.llm.base import Usage
from promptdag.spec.conditions import split_reference
from promptdag.spec.fan_out import is_item_reference
from promptdag.spec.graph import build_graph
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


def read_rows(path: str | Path, limit: int | None = None) -> list[Row]:
    """Rows of a `.jsonl` file (one JSON object a line) or a `.csv` file (a header line);
    SpecError naming the line for anything else."""
    from promptdag.settings import get_settings
    from promptdag.spec.input_limits import read_text

    file = Path(path)
    text = read_text(file, "data", get_settings().max_data_bytes, "max_data_bytes")
    text = text.removeprefix("\ufeff")  # a byte order mark (Excel's CSVs): as 'utf-8-sig' reads
    rows: list[Row] = []
    if file.suffix.lower() == ".csv":
        for row in csv.DictReader(io.StringIO(text)):
            rows.append({k: v for k, v in row.items() if k is not None})
            if limit is not None and len(rows) >= limit:
                break
    else:
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SpecError(f"{file}: line {number}: invalid JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise SpecError(f"{file}: line {number}: a row must be a JSON object")
            rows.append(row)
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise SpecError(f"{file}: no rows (expected .jsonl lines of JSON objects, or a .csv)")
    return rows


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


def expand(spec: WorkflowSpec, rows: list[Row], offset: int = 0) -> Batch:
    """One instance of `spec` per row, as one spec (see module docstring); SpecError for a row
    that lacks a field a prompt uses, a field named like a task, or two rows with one id."""
    if not rows:
        raise SpecError("a batch needs at least one row")
    names = {t.name for t in spec.tasks}
    fields = set().union(*(row.keys() for row in rows))
    clash = sorted(fields & names)
    if clash:
        raise SpecError(f"data field {clash[0]!r} is also a task name; rename one of them")
    # the workflow's own graph, with every field known (rows share one structure)
    graph = build_graph(_with_context(spec, dict.fromkeys(fields, "")))
    needs = {t.name: _field_uses(t, names) for t in spec.tasks}
    seen: dict[str, int] = {}
    tasks: list[TaskSpec] = []
    batch_rows: list[BatchRow] = []
    for position, row in enumerate(rows):
        index = offset + position
        rid = row_id(row, index)
        if rid in seen:
            raise SpecError(f"rows {seen[rid]} and {index} have the same id {rid!r}")
        seen[rid] = index
        for task in spec.tasks:
            missing = sorted(needs[task.name] - set(row) - set(task.context))
            if missing:
                raise SpecError(f"row {rid!r}: field {missing[0]!r} is missing "
                                f"(task {task.name!r} uses it)")
            tasks.append(_instance(task, rid, row, names, graph.depends_on[task.name]))
        mapping = {t.name: run_name(rid, t.name) for t in spec.tasks}
        finals = tuple(n for n in graph.names if not graph.dependents[n])
        batch_rows.append(BatchRow(rid, index, mapping, finals))
    expanded = spec.model_copy(update={"tasks": tasks})
    return Batch(expanded, tuple(batch_rows))


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
