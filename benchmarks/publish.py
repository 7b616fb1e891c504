"""The latest tables in docs/benchmarks.md: a benchmark's full run replaces its section there
(between `<!-- benchmarks:NAME:start -->` and `<!-- benchmarks:NAME:end -->`), beside the copy
it keeps in benchmarks/results/. The prose around the tables is written by hand."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def publish(name: str, table: str, doc: Path = DOC) -> bool:
    """Put `table` in `doc`'s section `name`; False (nothing written) when it has none."""
    start, end = f"<!-- benchmarks:{name}:start -->", f"<!-- benchmarks:{name}:end -->"
    try:
        text = doc.read_text()
    except OSError:
        return False
    if start not in text or end not in text:
        return False
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    doc.write_text(f"{before}{start}\n{table.strip()}\n{end}{after}")
    return True
