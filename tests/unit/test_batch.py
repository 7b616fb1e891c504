"""A batch is one workflow per row, as one DAG: names, dependencies, fields and row results."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptdag.engine.batch import expand, id_notice, read_rows, row_id, row_result
from promptdag.engine.results import TaskResult
from promptdag.errors import SpecError
from promptdag.spec.graph import build_graph
from promptdag.spec.models import parse_spec


def triage() -> dict:
    return {
        "name": "triage",
        "tasks": [
            {"name": "Classify", "prompt": "Classify this ticket: {{ text }}",
             "output_schema": "classification"},
            {"name": "Draft", "prompt": "Draft a reply to {{ text }} ({{ Classify.label }})",
             "when": "{{ Classify.label }} != 'spam'"},
            {"name": "Review", "prompt": "Review: {{ Draft }}", "context": {"tone": "kind"}},
        ],
    }


ROWS = [{"id": "T-1", "text": "my printer is on fire"}, {"text": "refund please"}]


def test_each_row_is_an_instance_named_after_its_row_with_dependencies_inside_it():
    batch = expand(parse_spec(triage()), ROWS)
    assert [t.name for t in batch.spec.tasks] == [
        "[T-1] Classify", "[T-1] Draft", "[T-1] Review", "[1] Classify", "[1] Draft", "[1] Review"]
    graph = build_graph(batch.spec)
    assert graph.depends_on["[1] Review"] == ("[1] Draft",)
    assert graph.depends_on["[T-1] Draft"] == ("[T-1] Classify",)
    assert graph.roots() == ["[T-1] Classify", "[1] Classify"]  # no barrier between rows


def test_row_fields_fill_prompts_and_references_point_into_the_row():
    spec = expand(parse_spec(triage()), ROWS).spec
    draft = spec.task("[1] Draft")
    assert draft.context["text"] == "refund please"
    assert "{{ [1] Classify.label }}" in draft.prompt and "{{ text }}" in draft.prompt
    assert draft.when == "{{ [1] Classify.label }} != 'spam'"
    assert spec.task("[T-1] Review").context == {"tone": "kind", "id": "T-1",
                                                 "text": "my printer is on fire"}


def test_a_missing_field_a_duplicate_id_or_a_field_named_like_a_task_is_bad_input():
    spec = parse_spec(triage())
    with pytest.raises(SpecError, match=r"row '1': field 'text' is missing \(task 'Classify'"):
        expand(spec, [{"text": "a"}, {"other": "b"}])
    with pytest.raises(SpecError, match="rows 0 and 1 have the same id 'x'"):
        expand(spec, [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])
    with pytest.raises(SpecError, match="data field 'Draft' is also a task name"):
        expand(spec, [{"text": "a", "Draft": "b"}])


def test_shards_number_rows_from_their_offset():
    batch = expand(parse_spec(triage()), [{"text": "a"}], offset=40)
    assert batch.rows[0].id == "40" and batch.rows[0].index == 40


def test_a_rows_result_holds_its_final_tasks_and_its_status():
    batch = expand(parse_spec(triage()), ROWS)
    row = batch.rows[1]
    done = {run: TaskResult(name=run, status="completed", result=f"r:{task}")
            for task, run in row.tasks.items()}
    result = row_result(row, done)
    assert (result.id, result.status, result.results) == ("1", "completed",
                                                          {"Review": "r:Review"})
    done["[1] Draft"] = TaskResult(name="[1] Draft", status="failed", error="boom")
    assert row_result(row, done).status == "failed"
    assert row_result(row, done).error == "[1] Draft: boom"


def test_rows_are_read_from_jsonl_and_csv(tmp_path: Path):
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"text": "a"}\n\n{"text": "b"}\n{"text": "c"}\n')
    assert read_rows(jsonl, limit=2) == [{"text": "a"}, {"text": "b"}]
    table = tmp_path / "rows.csv"
    table.write_text("id,text\n1,hello\n2,world\n")
    assert read_rows(table) == [{"id": "1", "text": "hello"}, {"id": "2", "text": "world"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n[1, 2]\n')
    with pytest.raises(SpecError, match="line 2: a row must be a JSON object"):
        read_rows(bad)


def test_a_csv_with_a_byte_order_mark_keeps_its_ids_and_a_missing_id_column_is_said(
        tmp_path: Path):
    table = tmp_path / "excel.csv"
    table.write_bytes("id,text\r\nT-1,hello\r\nT-2,world\r\n".encode("utf-8-sig"))
    rows = read_rows(table)
    assert rows == [{"id": "T-1", "text": "hello"}, {"id": "T-2", "text": "world"}]
    assert [row_id(row, i) for i, row in enumerate(rows)] == ["T-1", "T-2"]
    assert id_notice(table) is None
    unnamed = tmp_path / "unnamed.csv"
    unnamed.write_bytes("ID,text\nT-1,hello\n".encode("utf-8-sig"))
    notice = id_notice(unnamed)
    assert notice is not None and "\n" not in notice
    assert "no 'id' column (columns: 'ID', 'text')" in notice and "rename 'ID'" in notice
    assert id_notice(tmp_path / "rows.jsonl") is None  # JSON rows name their own fields


def test_a_workflow_result_derives_its_status_summary_and_usage_from_its_tasks():
    from datetime import datetime, timezone

    from promptdag.engine.results import WorkflowResult
    from promptdag.llm.base import Usage

    now = datetime.now(timezone.utc)
    tasks = [TaskResult(name="a", status="completed", usage=Usage(input_tokens=3)),
             TaskResult(name="b", status="failed", error="x", usage=Usage(output_tokens=2))]
    result = WorkflowResult.model_validate({
        "name": "w", "started_at": now, "finished_at": now, "elapsed_seconds": 1.0,
        "tasks": tasks, "overhead_usage": Usage(input_tokens=10)})
    assert result.status == "failed"
    assert (result.summary.completed_count, result.summary.failed_count) == (1, 1)
    assert (result.usage.input_tokens, result.usage.output_tokens) == (13, 2)
    again = WorkflowResult.model_validate_json(result.model_dump_json())  # read back: as said
    assert again == result and "overhead_usage" not in result.model_dump()
