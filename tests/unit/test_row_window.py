"""A streamed batch's window: rows read only as a slot opens, at most `window` open, each row
closed (and forgotten) when its tasks settle; a bad row fails alone; a resume passes on the
rows an earlier attempt completed. Pure: the scheduler's questions asked by hand."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from promptdag.engine.batch import RowPlan, id_notice, iter_rows
from promptdag.engine.results import RowResult, TaskResult
from promptdag.engine.row_window import RowWindow
from promptdag.spec.models import parse_spec

SPEC = parse_spec({"name": "pair", "tasks": [
    {"name": "Read", "prompt": "Read {{ doc }}"},
    {"name": "Title", "prompt": "Title for {{ Read }}"}]})


def counted(rows: list[dict], pulled: list[int]) -> Iterator[dict]:
    for row in rows:
        pulled[0] += 1
        yield row


def drive(window: RowWindow, log: list[str], peak: list[int]) -> None:
    """What flows/scheduler.py does, one task at a time, recording what it started."""
    while window.has_ready():
        peak[0] = max(peak[0], len(window._open))
        name = window.pop()
        log.append(name)
        window.settle(TaskResult(name=name, status="completed", result=f"done {name}"))


def test_rows_are_read_as_slots_open_and_closed_rows_are_forgotten():
    rows = [{"id": f"r{i}", "doc": f"d{i}"} for i in range(50)]
    pulled, done, started, peak = [0], [], [], [0]
    window = RowWindow(RowPlan(SPEC), counted(rows, pulled), window=3,
                       on_row=lambda row, tasks: done.append((row, tasks)))
    assert pulled[0] == 3  # the first slots only: nothing else is read before it runs
    drive(window, started, peak)
    window.finish("unused")
    assert peak[0] == 3 and pulled[0] == 50 and not window._open and not window._owner
    assert [row.id for row, _ in done] == [f"r{i}" for i in range(50)]
    assert all(row.status == "completed" and row.results == {"Title": f"done [{row.id}] Title"}
               for row, _ in done)
    assert started[:3] == ["[r0] Read", "[r0] Title", "[r1] Read"]  # earlier rows first
    assert window.tally.summary.total_tasks == 100 and window.tally.status == "completed"


def test_a_bad_row_fails_alone_with_its_reason_and_the_others_run():
    rows = [{"id": "a", "doc": "x"}, {"id": "b"}, {"id": "a", "doc": "again"},
            {"id": "c", "doc": "y", "Read": "clash"}, {"id": "d", "doc": "z"}]
    done: list[RowResult] = []
    window = RowWindow(RowPlan(SPEC), iter(rows), window=2,
                       on_row=lambda row, tasks: done.append(row))
    drive(window, [], [0])
    window.finish("unused")
    by_index = {row.index: row for row in done}
    assert [by_index[i].status for i in range(5)] == ["completed", "failed", "failed",
                                                      "failed", "completed"]
    assert "field 'doc' is missing" in (by_index[1].error or "")
    assert "id 'a' is used by an earlier row" in (by_index[2].error or "")
    assert "'Read' is also a task name" in (by_index[3].error or "")
    assert window.tally.status == "failed" and window.tally.failed_rows == 3


def test_a_resume_passes_on_completed_rows_without_starting_their_tasks():
    rows = [{"id": f"r{i}", "doc": f"d{i}"} for i in range(4)]
    earlier = {"r1": RowResult(id="r1", index=1, status="completed", results={"Title": "old"})}
    done, started = [], []
    window = RowWindow(RowPlan(SPEC), iter(rows), window=2,
                       on_row=lambda row, tasks: done.append(row), finished=earlier.get)
    drive(window, started, [0])
    assert not any(name.startswith("[r1]") for name in started) and len(started) == 6
    assert next(r for r in done if r.id == "r1").results == {"Title": "old"}
    assert window.tally.summary.reused_count == 2 and window.tally.summary.total_tasks == 8


def test_stopping_closes_open_rows_and_fails_the_unread_ones_for_the_reason():
    rows = [{"id": f"r{i}", "doc": f"d{i}"} for i in range(5)]
    done: list[RowResult] = []
    window = RowWindow(RowPlan(SPEC), iter(rows), window=2,
                       on_row=lambda row, tasks: done.append(row))
    name = window.pop()
    window.settle(TaskResult(name=name, status="completed", result="x"))
    window.stopping = True
    window.finish("cancelled: timed out")
    assert len(done) == 5 and all(r.status == "failed" for r in done)
    assert {r.error for r in done if r.index >= 2} == {"cancelled: timed out"}


def test_a_csv_with_a_byte_order_mark_keeps_its_id_column(tmp_path: Path):
    table = tmp_path / "rows.csv"
    table.write_bytes("\ufeffid,doc\nT-1,printer\nT-2,refund\n".encode())
    assert [row["id"] for row in iter_rows(table)] == ["T-1", "T-2"]
    assert id_notice(table) is None
    plain = tmp_path / "plain.csv"
    plain.write_text("Id,doc\n1,x\n")
    notice = id_notice(plain)
    assert notice is not None and "has no 'id' column" in notice and "rename 'Id'" in notice


def test_a_task_added_to_a_row_joins_it_and_the_row_closes_with_it():
    """What a fan-out does: tasks added while a row runs go into that row's ready set, hold
    the row open until they settle, and are the row's tasks when it closes."""
    rows = [{"id": f"r{i}", "doc": f"d{i}"} for i in range(2)]
    done: list[tuple[RowResult, list[TaskResult]]] = []
    closed: list[str] = []
    window = RowWindow(RowPlan(SPEC), iter(rows), window=2,
                       on_row=lambda row, tasks: done.append((row, tasks)))
    window.on_close = closed.append
    first = window.pop()
    assert first == "[r0] Read"
    extra = SPEC.tasks[0].model_copy(update={"name": "[r0] Extra", "prompt": "more"})
    window.add(extra, depends_on=(first,), references=frozenset(), before=("[r0] Title",))
    assert window.part_for(("[r0] Extra",)).specs["[r0] Extra"] is extra
    assert window.row_of("[r0] Extra") == "r0" and window.total == 5
    window.settle(TaskResult(name=first, status="completed", result="read"))
    order = []
    while window.has_ready():
        name = window.pop()
        order.append(name)
        window.settle(TaskResult(name=name, status="completed", result=f"done {name}"))
    assert order.index("[r0] Extra") < order.index("[r0] Title")  # Title waited for it
    assert closed == ["r0", "r1"] and not window._owner
    row, tasks = done[0]
    assert row.id == "r0" and [t.name for t in tasks] == ["[r0] Read", "[r0] Extra",
                                                          "[r0] Title"]
