"""A batch run's rows as they finish: one JSONL line each (`--output`), and row-level progress.

Listens to the scheduler's events (each finished task carries its result), so a row's line is
written, and flushed, the moment its last task settles; a long batch can be read while it
runs, and a killed one keeps every line it wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from promptdag.engine.batch import Batch, BatchRow, row_result
from promptdag.engine.events import TaskEvent
from promptdag.engine.results import RowResult, TaskResult, WorkflowResult


class RowWriter:
    """Writes each row's `RowResult` as a JSON line when the row is done (see module)."""

    def __init__(self, batch: Batch, output: Path | None, progress: bool = True) -> None:
        self.batch = batch
        self.total = len(batch.rows)
        self._row_of = batch.row_of()
        self._results: dict[str, TaskResult] = {}
        self._instances: dict[str, list[TaskResult]] = {}  # fan-out run name -> instances
        self._written: set[str] = set()
        self._file: IO[str] | None = output.open("w", encoding="utf-8") if output else None
        self.progress = progress
        self.failed = 0

    def __call__(self, event: TaskEvent) -> None:
        if event.kind != "finished" or event.result is None:
            return
        if event.workflow != self.batch.spec.name:
            return
        fan_out = event.result.fan_out
        if fan_out is not None and fan_out in self._row_of:  # counted with its row
            self._instances.setdefault(fan_out, []).append(event.result)
            return
        if event.task not in self._row_of:
            return
        row, _ = self._row_of[event.task]
        self._results[event.task] = event.result
        if row.id not in self._written and all(r in self._results for r in row.tasks.values()):
            self._write(row_result(row, self._results, self._instances))

    @property
    def written(self) -> int:
        """Rows done so far."""
        return len(self._written)

    def _write(self, result: RowResult) -> None:
        self._written.add(result.id)
        self.failed += result.status != "completed"
        if self._file is not None:
            self._file.write(result.model_dump_json() + "\n")
            self._file.flush()
        if self.progress:
            why = f": {result.error}" if result.error else ""
            mark = "ok" if result.status == "completed" else "FAILED"
            print(f"  [{len(self._written)}/{self.total} rows] {mark} {result.id}{why}",
                  file=sys.stderr, flush=True)

    def finish(self, result: WorkflowResult) -> None:
        """Write the rows no event completed (a run that stopped early), then close."""
        for row in result.rows or []:
            if row.id not in self._written:
                self._write(row)
        self.close()

    def close(self) -> None:
        """Close --output, keeping the rows written so far (a cancelled run has no result)."""
        if self._file is not None and not self._file.closed:
            self._file.close()


def rows_line(rows: list[RowResult]) -> str:
    """The summary's batch totals."""
    done = sum(r.status == "completed" for r in rows)
    return f"rows: {done} completed, {len(rows) - done} failed of {len(rows)}"


__all__ = ["BatchRow", "RowWriter", "rows_line"]
