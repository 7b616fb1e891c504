"""Fan-out without Prefect: what `for_each` may name (checked before a run, one line naming the
task and the fix), the items a result yields, instance names, the joined result, the estimate,
and `validate` / `graph` on fan-out specs."""

from __future__ import annotations

from typing import Any

import pytest

from promptdag.cli.main import main
from promptdag.engine.estimate import estimate
from promptdag.engine.fan_out import (
    FanOutError,
    instance_name,
    instance_spec,
    items_of,
    joined,
)
from promptdag.engine.results import TaskResult
from promptdag.errors import SpecError
from promptdag.spec.graph import build_graph
from promptdag.spec.models import parse_spec

OUTLINE = {"name": "Outline", "prompt": "o", "output_schema": {
    "type": "object", "properties": {
        "sections": {"type": "array", "items": {"type": "string"}},
        "title": {"type": "string"}}}}


def spec(*tasks: dict[str, Any], **config: Any):
    return parse_spec({"name": "w", "config": config, "tasks": [OUTLINE, *tasks]})


def research(**fields: Any) -> dict[str, Any]:
    return {"name": "Research", "for_each": "{{ Outline.sections }}",
            "prompt": "r {{ item }} {{ index }}", **fields}


def refused(*tasks: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        build_graph(spec(*tasks))
    return str(caught.value)


def test_a_fan_out_depends_on_its_list_and_reads_item_and_index_as_inputs():
    graph = build_graph(spec(research(), {"name": "Write", "prompt": "{{ Research.outputs }}"}))
    assert graph.depends_on["Research"] == ("Outline",)
    assert graph.fan_outs == {"Research": "Outline.sections"}
    assert graph.depends_on["Write"] == ("Research",)


def test_bad_for_each_references_are_refused_with_one_line_naming_the_fix():
    assert refused(research(for_each="{{ Outline.title }}")) == (
        "task 'Research': field 'for_each': {{ Outline.title }} is string in the output_schema "
        "of 'Outline', not a list; fan out over a field of type: array")
    assert "has no field 'chapters' (fields: sections, title)" in refused(
        research(for_each="{{ Outline.chapters }}"))
    assert "did you mean 'Outline'?" in refused(research(for_each="{{ Outlines.sections }}"))
    assert "use {{ Plain.lines }} for the lines of its text answer" in refused(
        {"name": "Plain", "prompt": "p"}, research(for_each="{{ Plain.items }}"))
    assert "fans out: read its results as {{ Research }}" in refused(
        research(), {"name": "W", "prompt": "{{ Research.first }}"})
    assert "{{ item }}, which is neither a task nor a key" in refused(
        {"name": "Loose", "prompt": "{{ item }}"})
    with pytest.raises(SpecError, match="give one reference to a list"):
        spec(research(for_each="Outline.sections"))


def test_lines_of_a_text_answer_and_outputs_of_a_fan_out_are_lists():
    graph = build_graph(spec({"name": "Plain", "prompt": "p"},
                             research(for_each="{{ Plain.lines }}"),
                             {"name": "Again", "for_each": "{{ Research.outputs }}",
                              "prompt": "{{ item }}"}))
    assert graph.fan_outs == {"Research": "Plain.lines", "Again": "Research.outputs"}


def test_items_come_from_the_field_the_lines_or_nothing_and_never_past_max_items():
    assert items_of("R", "O.sections", ["sections"], "{}", {"sections": ["a", "b"]}, 5) == [
        "a", "b"]
    assert items_of("R", "O.lines", ["lines"], "a\n\n  b  \n", None, 5) == ["a", "b"]
    assert items_of("R", "O.sections", ["sections"], "", None, 5) == []  # a branch not taken
    with pytest.raises(FanOutError) as caught:
        items_of("R", "O.sections", ["sections"], "{}", {"sections": list(range(7))}, 5)
    assert str(caught.value) == ("task 'R': for_each {{ O.sections }} gave 7 items, more than "
                                 "max_items 5; raise max_items or ask for fewer")
    with pytest.raises(FanOutError, match="is not a list in the result"):
        items_of("R", "O.sections", ["sections"], "{}", {"sections": "a, b"}, 5)


def test_instances_are_named_after_their_item_and_keep_the_tasks_options():
    assert instance_name("Research", 2, "Heat pumps") == "Research[2]: Heat pumps"
    assert instance_name("R", 0, {"title": "Solar {x}", "n": 1}) == "R[0]: Solar x"
    assert instance_name("R", 1, "line\nbreak\t" + "x" * 80).startswith("R[1]: line break x")
    assert len(instance_name("R", 1, "x" * 200)) <= len("R[1]: ") + 60
    task = spec(research(priority="high", max_retries=7)).task("Research")
    one = instance_spec(task, 3, {"title": "t"})
    assert (one.name, one.context, one.priority, one.max_retries, one.for_each) == (
        "Research[3]: t", {"item": {"title": "t"}, "index": 3}, task.priority, 7, None)


def test_the_join_is_every_result_in_item_order():
    parts = [TaskResult(name=f"R[{i}]", status="completed", result=f"text {i}",
                        output={"n": i} if i else None) for i in range(3)]
    parts[2] = TaskResult(name="R[2]", status="failed", error="boom")
    result = joined("R", ["O"], parts)
    assert result.result == "1. text 0\n\n2. text 1\n\n3. [task 'R[2]' failed: boom]"
    assert result.output == {"outputs": ["text 0", {"n": 1}, "[task 'R[2]' failed: boom]"]}
    assert result.usage.input_tokens == 0


def test_the_estimate_counts_assumed_items_side_by_side():
    workflow = spec(research(), {"name": "Write", "prompt": "w"}, breadth=2, latency_hint_s=1)
    graph = build_graph(workflow)
    four = estimate(workflow, graph, items=4)
    assert (four.makespan_seconds, four.sequential_seconds, four.assumed_items) == (4.0, 6.0, 4)
    assert "assuming 4 items per fan-out" in four.line()
    assert estimate(workflow, graph, items=4, breadth=4).makespan_seconds == 3.0


def test_validate_and_graph_show_the_fan_out(tmp_path, capsys: pytest.CaptureFixture[str]):
    import json

    path = tmp_path / "fan.json"
    path.write_text(json.dumps({"name": "w", "tasks": [
        OUTLINE, research(), {"name": "Write", "prompt": "{{ Research }}"}]}))
    assert main(["validate", str(path), "--items", "12"]) == 0
    out = capsys.readouterr().out
    assert "3 tasks (1 fan out at run time)" in out
    assert "stage 2: Research (one per item of Outline.sections)" in out
    assert "assuming 12 items per fan-out" in out
    assert main(["graph", str(path)]) == 0
    drawn = capsys.readouterr().out
    assert '[/"Research (for each Outline.sections)"/]' in drawn
    assert 't0 == "each sections" ==> t1' in drawn

    path.write_text(json.dumps({"name": "w", "tasks": [
        OUTLINE, research(for_each="{{ Outline.title }}")]}))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "field 'for_each': {{ Outline.title }} is string" in err
    assert len(err.strip().splitlines()) == 1
