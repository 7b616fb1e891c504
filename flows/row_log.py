"""A batch run's row log: each row's outcome, one JSON line, appended as the row ends.

The log lives in the result storage, one file per run scope (a run and its resumes share one),
so a streamed batch keeps no row in memory: `promptdag result RUN --output FILE` reads the rows
back from here, and a resume passes a row the log already holds as completed on as it is,
without scheduling it again. A row that ended more than once (failed, then completed on a
resume) counts as its last line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO

from promptdag.engine.results import RowResult

INLINE_ROWS = 1000  # rows a batch's result also holds inline; past that, only the log has them


def log_path(scope: str) -> Path:
    """Where the rows of the run scope `scope` are logged."""
    from promptdag.tasks.result_persistence import storage_path

    return storage_path() / "rows" / f"{scope}.jsonl"


class RowLog:
    """Appends rows to the scope's log; knows the rows an earlier attempt completed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.earlier = completed_lines(path)  # id -> JSON line, for a resume
        self.error: str | None = None
        self._file: IO[str] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            self.error = f"the row log {path} cannot be written: {exc.strerror or exc}"

    def finished(self, rid: str) -> RowResult | None:
        """The row's completed outcome from an earlier attempt of this run, if any."""
        line = self.earlier.get(rid)
        return RowResult.model_validate_json(line) if line is not None else None

    def write(self, row: RowResult) -> None:
        if self._file is None:
            return
        try:
            self._file.write(row.model_dump_json() + "\n")
            self._file.flush()
        except OSError as exc:
            self.error = f"the row log {self.path} cannot be written: {exc.strerror or exc}"
            self.close()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None


def completed_lines(path: Path) -> dict[str, str]:
    """Rows whose last outcome in the log is completed: id -> that JSON line."""
    done: dict[str, str] = {}
    if not path.is_file():
        return done
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                data = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that row runs again
                continue
            if data.get("status") == "completed":
                done[str(data["id"])] = line.rstrip("\n")
            else:
                done.pop(str(data.get("id")), None)
    return done


def read_log(path: str | Path) -> list[RowResult]:
    """Every row of a log, its last outcome, in data order."""
    rows: dict[int, RowResult] = {}
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                row = RowResult.model_validate_json(line)
            except ValueError:
                continue
            rows[row.index] = row
    return [rows[index] for index in sorted(rows)]
