"""Hostile input never costs a traceback, a hang or a recursion error: either a clean one-line
SpecError (exit 2 from the CLI) or a valid spec whose graph is correct."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptdag import SpecError, parse_spec, validate_spec
from promptdag.cli import main
from promptdag.spec import load_spec
from promptdag.template import render_task_prompt

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
names = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() == s and s.strip())


def check_outcome(data: object) -> None:
    """Either SpecError with one line, or a valid spec with a correct topological order."""
    try:
        spec = parse_spec(data)
        graph = validate_spec(spec)
    except SpecError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    order = graph.topological_order()
    position = {name: i for i, name in enumerate(order)}
    assert sorted(order) == sorted(graph.names)
    for name in graph.names:
        assert all(position[dep] < position[name] for dep in graph.depends_on[name])


@SETTINGS
@given(json_values)
def test_random_json_values_never_crash(data):
    check_outcome(data)


@st.composite
def random_workflows(draw):
    """Specs with random names (unicode, templates, huge), random dependencies and fields."""
    task_names = draw(st.lists(names | st.text(max_size=300), min_size=1, max_size=12))
    tasks = []
    for name in task_names:
        task: dict = {
            "name": name,
            "prompt": draw(
                st.sampled_from(
                    [
                        "plain",
                        "{{ " + draw(st.sampled_from(task_names)) + " }}",
                        "{{ nope }}",
                        "{% raw %}{{ 1 + 1 }}",
                        "{__import__('os').system('x')}",
                        "",
                        " \u200b",
                    ]
                )
            ),
        }
        if draw(st.booleans()):
            task["depends_on"] = draw(st.lists(st.sampled_from(task_names + ["ghost"]), max_size=4))
        if draw(st.booleans()):
            task["task_type"] = draw(st.sampled_from(["sequential", "parallel", "hybrid", "x"]))
        if draw(st.booleans()):
            task["context"] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
        if draw(st.booleans()):
            task[draw(st.sampled_from(["priority", "max_retries", "model", "bogus"]))] = draw(
                json_values
            )
        tasks.append(task)
    return {
        "name": draw(names),
        "tasks": tasks,
        "config": draw(
            st.dictionaries(
                st.sampled_from(["breadth", "failure_mode", "timeout_seconds", "model"]),
                json_values,
                max_size=2,
            )
        ),
    }


@SETTINGS
@given(random_workflows())
def test_random_workflows_validate_cleanly_or_are_correct(data):
    check_outcome(data)


@SETTINGS
@given(st.binary(max_size=400))
def test_random_bytes_in_a_spec_file_are_a_clean_error(tmp_path: Path, raw: bytes):
    for suffix in (".yaml", ".json"):
        path = tmp_path / f"spec{suffix}"
        path.write_bytes(raw)
        try:
            load_spec(path)
        except SpecError as exc:
            assert "\n" not in str(exc)


@pytest.mark.parametrize("text", ["[" * 100_000, '{"a":' * 100_000, "- " * 50_000 + "x"])
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_absurd_nesting_is_a_clean_error(tmp_path: Path, text: str, suffix: str):
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(SpecError):
        load_spec(path)


def test_deep_chains_and_huge_fan_outs_validate(tmp_path: Path, capsys):
    chain = [{"name": "t0", "prompt": "start"}] + [
        {"name": f"t{i}", "prompt": "{{ t" + str(i - 1) + " }}"} for i in range(1, 5000)
    ]
    wide = [{"name": f"w{i}", "prompt": "x", "depends_on": []} for i in range(10_000)]
    for tasks in (chain, wide):
        path = tmp_path / "big.json"
        path.write_text(json.dumps({"name": "big", "tasks": tasks}))
        assert main(["validate", str(path)]) == 0
    capsys.readouterr()


@SETTINGS
@given(
    st.text(alphabet=string.printable, max_size=80),
    st.dictionaries(st.sampled_from(["a", "b"]), st.text(max_size=40), max_size=2),
)
def test_rendering_is_plain_text_replacement(template: str, context: dict):
    rendered = render_task_prompt(template, context, {})
    # Nothing evaluated: everything not a known placeholder survives as written.
    if "{{" not in template:
        assert rendered == template


@SETTINGS
@given(random_workflows())
def test_the_cli_answers_bad_specs_with_one_line_and_exit_2(tmp_path: Path, capsys, data):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    code = main(["validate", str(path)])
    out = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        assert out.out == "" and len(out.err.strip().splitlines()) == 1
        assert "Traceback" not in out.err
