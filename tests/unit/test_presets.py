"""Presets set several config fields at once; a field set explicitly always wins."""

from __future__ import annotations

import pytest

from promptdag.engine.objective import ObjectiveConfig
from promptdag.errors import SpecError
from promptdag.spec.models import parse_spec
from promptdag.spec.presets import PRESETS, presets_table


def _spec(config: dict[str, object]):  # type: ignore[no-untyped-def]
    return parse_spec({"name": "p", "config": config, "tasks": [{"name": "a", "prompt": "a"}]})


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_sets_its_row_of_the_table(name: str) -> None:
    config = _spec({"preset": name}).config
    for field, value in PRESETS[name].items():
        assert getattr(config, field) == value, field
    objective = ObjectiveConfig(preset=name)  # type: ignore[arg-type]
    assert objective.breadth == PRESETS[name]["breadth"]
    assert objective.failure_mode == PRESETS[name]["failure_mode"]


def test_explicit_fields_win_and_survive_a_round_trip() -> None:
    spec = _spec({"preset": "speed", "breadth": 2, "failure_mode": "fail_fast"})
    assert (spec.config.breadth, spec.config.failure_mode, spec.config.max_retries) == (
        2, "fail_fast", 1)
    again = parse_spec(spec.model_dump(exclude_unset=True))  # as `submit` sends a spec
    assert again.config == spec.config


def test_cost_caches_workflows_and_plans_with_the_small_model() -> None:
    assert _spec({"preset": "cost"}).config.cache is True
    assert _spec({"preset": "cost", "cache": False}).config.cache is False
    config = ObjectiveConfig(preset="cost", model="openai:gpt-4o", synthesiser_model=None)
    assert (config.planner_model, config.reflector_model) == ("openai:gpt-4o-mini",) * 2
    assert config.role_model("synthesiser") == "openai:gpt-4o"
    own = ObjectiveConfig(preset="cost", model="openai:gpt-4o", planner_model="openai:o3")
    assert own.planner_model == "openai:o3"
    assert ObjectiveConfig(preset="cost").planner_model is None  # simulated: nothing cheaper


def test_an_unknown_preset_is_one_clear_line() -> None:
    with pytest.raises(SpecError, match="preset"):
        _spec({"preset": "fast"})


def test_the_table_lists_every_preset() -> None:
    table = presets_table()
    assert all(f"| {name} |" in table for name in PRESETS)
