"""How a batch is cut into shards and put back together (pure: promptdag/remote/shards.py), and the
command line's answers to misuse (no server needed: they fail before any call)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from promptdag.engine.results import RowResult
from promptdag.errors import SpecError
from promptdag.remote.shards import gather_rows, new_batch_tag, split_rows


def rows(n: int) -> list[dict[str, int]]:
    return [{"n": i} for i in range(n)]


@pytest.mark.parametrize(("count", "shards", "sizes"), [
    (40, 2, [20, 20]), (10, 3, [4, 3, 3]), (2, 5, [1, 1]), (7, 1, [7]),
])
def test_shards_are_contiguous_and_balanced(count: int, shards: int, sizes: list[int]) -> None:
    parts = split_rows(rows(count), shards)
    assert [len(p.rows) for p in parts] == sizes
    assert [p.number for p in parts] == list(range(1, len(sizes) + 1))
    # each shard's offset is the data index of its first row: indexes stay the batch's
    assert [r for p in parts for r in p.rows] == rows(count)
    assert all(p.rows[0]["n"] == p.offset for p in parts)


def test_no_shards_or_no_rows_is_bad_input() -> None:
    with pytest.raises(SpecError, match="--shards must be at least 1"):
        split_rows(rows(3), 0)
    with pytest.raises(SpecError, match="at least one row"):
        split_rows([], 2)


def test_gathered_rows_are_in_row_order_and_overlaps_are_refused() -> None:
    def row(i: int) -> RowResult:
        return RowResult(id=f"r{i}", index=i, status="completed")

    assert [r.index for r in gather_rows([[row(2), row(3)], [row(0), row(1)]])] == [0, 1, 2, 3]
    with pytest.raises(SpecError, match="two runs report row 1"):
        gather_rows([[row(0), row(1)], [row(1)]])
    assert new_batch_tag() != new_batch_tag() and new_batch_tag().startswith("batch:")


@pytest.mark.parametrize(("args", "message"), [
    (["submit", "examples/seed_api_request.json", "--shards", "2"],
     "--shards, --limit and --batch-api go with --data"),
    (["submit", "--objective", "x", "--data", "rows.jsonl"], "--data goes with a spec file"),
])
def test_submit_misuse_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "promptdag.cli", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_the_batch_benchmarks_ideal_is_the_list_schedule_of_each_shards_combined_dag() -> None:
    from benchmarks.batch import batch_rows, batch_spec, ideal_makespan

    spec = batch_spec(latency=0.5, breadth=64)
    # 128 rows x 3 chained tasks at breadth 64: 6 full rounds of 0.5 s, no idle slot
    assert ideal_makespan(spec, batch_rows(128), 1, 0.5) == 3.0
    assert ideal_makespan(spec, batch_rows(128), 2, 0.5) == 1.5  # each shard its own breadth
    # issue 15's batch: 3,000 tasks in 47 rounds of 64, but the chains leave the last round
    # waiting for its rows' previous tasks
    assert ideal_makespan(spec, batch_rows(1000), 1, 0.5) == 24.0
