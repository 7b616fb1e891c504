"""A batch run's rows as they finish: one JSONL line each (`--output`), and row-level progress.

Listens to the rows the run announces as they end (promptdag/engine/events.py `emit_row`), so
a row's line is written, and flushed, the moment its last task settles; a long batch can be
read while it runs, and a killed one keeps every line it wrote. A write that fails (a full
disk) stops the writing, not the run: the rows stay in the run's row log, and the command
then says how to recover them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from promptdag.cli._terminal import safe
from promptdag.engine.results import RowResult
from promptdag.errors import ConfigError


class RowWriter:
    """Writes each row's `RowResult` as a JSON line when the row is done (see module)."""

    def __init__(self, output: Path | None, total: int | None = None,
                 progress: bool = True) -> None:
        self.output = output
        self.total = total
        self.progress = progress
        self.written = 0  # rows done so far (written, or only counted once a write failed)
        self.failed = 0
        self.error: str | None = None  # why --output could not be written
        self._file: IO[str] | None = None
        if output is not None:
            try:
                self._file = output.open("w", encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot write --output {output}: {exc.strerror or exc}: "
                                  "choose a writable file") from None

    def __call__(self, row: RowResult) -> None:
        self.written += 1
        self.failed += row.status != "completed"
        if self._file is not None:
            try:
                self._file.write(row.model_dump_json() + "\n")
                self._file.flush()
            except OSError as exc:
                self.error = exc.strerror or str(exc)
                self.close()
        if self.progress:
            why = f": {safe(row.error)}" if row.error else ""
            mark = "ok" if row.status == "completed" else "FAILED"
            of = f"/{self.total}" if self.total is not None else ""
            print(f"  [{self.written}{of} rows] {mark} {safe(row.id)}{why}",
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except OSError as exc:  # the last buffered bytes did not fit either
            self.error = self.error or exc.strerror or str(exc)


def rows_line(done: int, failed: int) -> str:
    """The summary's batch totals."""
    return f"rows: {done - failed} completed, {failed} failed of {done}"


__all__ = ["RowWriter", "rows_line"]
