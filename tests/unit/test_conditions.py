"""`when:` conditions: readable, validated before running, evaluated without eval."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptdag import SpecError, build_graph, load_spec, parse_spec
from promptdag.spec.conditions import evaluate, parse_condition

LABEL = {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "number"}}}


def holds(condition: str, values: dict) -> bool:
    return bool(evaluate(parse_condition(condition), values.get))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("{{ A.label }} == 'Complex'", True),  # text compares case-insensitively
        ("{{ A.label }} != 'complex'", False),
        ("{{ A.score }} >= 0.8 and {{ A.score }} < 1", True),
        ("{{ B }} contains 'TODO'", True),
        ("not ({{ B }} contains 'todo') or {{ A.score }} > 5", False),
        ("{{ A.label }} in 'simple complex'", True),
        ("{{ A.score }} > 'lots'", False),  # text vs number: simply false
    ],
)
def test_the_expression_language(condition, expected):
    values = {"A.label": "complex ", "A.score": 0.9, "B": "draft with a todo"}
    assert holds(condition, values) is expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "{{ A }} ==",
        "__import__('os')",
        "{{ A }} = 'x'",
        "({{ A }} == 'x'",
        "{{ A }} == 'x' extra",
    ],
)
def test_unreadable_conditions_are_spec_errors(bad):
    with pytest.raises(SpecError):
        parse_condition(bad)


def spec(*tasks: dict) -> dict:
    return {"name": "w", "tasks": list(tasks)}


def test_a_condition_on_an_unknown_task_is_rejected_with_a_suggestion():
    with pytest.raises(
        SpecError,
        match=r"task 'B': condition references \{\{ Asess.label \}\}.*"
        r"did you mean 'Assess'",
    ):
        build_graph(
            parse_spec(
                spec(
                    {"name": "Assess", "prompt": "x", "output_schema": LABEL},
                    {"name": "B", "prompt": "y", "when": "{{ Asess.label }} == 'a'"},
                )
            )
        )


def test_a_condition_on_an_unknown_field_names_the_known_fields():
    with pytest.raises(SpecError, match=r"has no field 'lable' \(fields: label, score\)"):
        build_graph(
            parse_spec(
                spec(
                    {"name": "A", "prompt": "x", "output_schema": LABEL},
                    {"name": "B", "prompt": "y", "when": "{{ A.lable }} == 'a'"},
                )
            )
        )


def test_fields_need_an_output_schema():
    with pytest.raises(SpecError, match="task 'A' has no output_schema"):
        build_graph(
            parse_spec(
                spec({"name": "A", "prompt": "x"}, {"name": "B", "prompt": "Use {{ A.label }}"})
            )
        )


def test_named_schemas_resolve_and_unknown_names_do_not():
    g = build_graph(
        parse_spec(
            spec(
                {"name": "A", "prompt": "x", "output_schema": "classification"},
                {"name": "B", "prompt": "y", "when": "{{ A.label }} == 'x'"},
            )
        )
    )
    assert g.depends_on["B"] == ("A",) and g.conditions["B"] == "{{ A.label }} == 'x'"
    with pytest.raises(SpecError, match="unknown output_schema 'verdict'"):
        build_graph(parse_spec(spec({"name": "A", "prompt": "x", "output_schema": "verdict"})))


def test_branches_show_in_mermaid_as_labelled_dashed_edges():
    g = build_graph(
        parse_spec(
            spec(
                {"name": "A", "prompt": "x", "output_schema": LABEL},
                {"name": "B", "prompt": "y", "when": "{{ A.label }} == 'a'"},
                {"name": "C", "workflow": {"name": "sub", "tasks": [{"name": "s", "prompt": "z"}]}},
            )
        )
    )
    lines = g.mermaid().splitlines()
    assert "    t0 -. \"A.label == 'a'\" .-> t1" in lines
    assert '    t2[["C"]]' in lines


def test_sub_workflow_files_load_relative_to_their_parent(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.yaml").write_text("name: inner\ntasks: [{name: i, prompt: p}]\n")
    (tmp_path / "outer.yaml").write_text(
        "name: outer\ntasks: [{name: o, workflow: sub/inner.yaml}]\n"
    )
    assert load_spec(tmp_path / "outer.yaml").tasks[0].workflow.name == "inner"  # type: ignore


def test_sub_workflow_cycles_across_files_are_rejected(tmp_path: Path):
    (tmp_path / "a.yaml").write_text("name: a\ntasks: [{name: x, workflow: b.yaml}]\n")
    (tmp_path / "b.yaml").write_text("name: b\ntasks: [{name: y, workflow: a.yaml}]\n")
    with pytest.raises(
        SpecError,
        match=r"sub-workflow cycle across files: a.yaml -> b.yaml -> "
        r"a.yaml",
    ):
        load_spec(tmp_path / "a.yaml")
