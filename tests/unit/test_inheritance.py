"""Sub-workflows take the parent's model, options and breadth unless they set their own;
`--model` reaches every task at every level."""

from __future__ import annotations

from promptdag.spec.models import WorkflowSpec, parse_spec
from promptdag.spec.overrides import override


def nested(sub_config: dict | None = None, parent_config: dict | None = None) -> WorkflowSpec:
    sub = {"name": "sub", "tasks": [{"name": "S1", "prompt": "inner"},
                                    {"name": "S2", "prompt": "inner 2", "model": "probe:own"}]}
    if sub_config is not None:
        sub["config"] = sub_config
    parent = {"name": "parent", "tasks": [{"name": "P", "prompt": "outer"},
                                          {"name": "Sub", "workflow": sub}]}
    if parent_config is not None:
        parent["config"] = parent_config
    return parse_spec(parent)


def sub_of(spec: WorkflowSpec) -> WorkflowSpec:
    workflow = spec.task("Sub").workflow
    assert isinstance(workflow, WorkflowSpec)
    return workflow


def test_a_sub_workflow_without_its_own_model_runs_on_the_parents():
    spec = nested(parent_config={"model": "openai:smollm2", "breadth": 7,
                                 "model_options": {"base_url": "http://127.0.0.1:1/v1"}})
    assert sub_of(spec).config.model == "openai:smollm2"
    assert sub_of(spec).config.breadth == 7
    assert sub_of(spec).config.model_options == {"base_url": "http://127.0.0.1:1/v1"}


def test_a_sub_workflows_own_settings_win_and_options_merge_key_by_key():
    spec = nested(sub_config={"model": "simulated", "breadth": 2,
                              "model_options": {"temperature": 0}},
                  parent_config={"model": "openai:smollm2", "breadth": 7,
                                 "model_options": {"base_url": "http://h/v1", "temperature": 1}})
    sub = sub_of(spec)
    assert (sub.config.model, sub.config.breadth) == ("simulated", 2)
    assert sub.config.model_options == {"base_url": "http://h/v1", "temperature": 0}


def test_nothing_is_inherited_that_the_parent_left_at_its_default():
    sub = sub_of(nested())
    assert sub.config.model_fields_set == set()


def test_the_command_lines_model_reaches_every_task_at_every_level():
    spec = override(nested(sub_config={"model": "simulated"}), model="openai:smollm2")
    sub = sub_of(spec)
    assert spec.config.model == sub.config.model == "openai:smollm2"
    assert sub.task("S2").model is None  # its own model gave way to the command line's


def test_the_command_lines_breadth_reaches_sub_workflows_without_their_own():
    assert sub_of(override(nested(), breadth=9)).config.breadth == 9
    assert sub_of(override(nested(sub_config={"breadth": 2}), breadth=9)).config.breadth == 2


def test_a_default_model_applies_only_where_the_spec_names_none():
    assert sub_of(override(nested(), default_model="openai:x")).config.model == "openai:x"
    spec = override(nested(parent_config={"model": "simulated"}), default_model="openai:x")
    assert spec.config.model == sub_of(spec).config.model == "simulated"
