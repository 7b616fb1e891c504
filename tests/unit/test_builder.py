"""WorkflowBuilder writes the same specs as a file would, with the same validation."""

from __future__ import annotations

import pytest

from promptdag import SpecError, WorkflowBuilder, build_graph


def test_the_seed_builder_example_builds():
    spec = (
        WorkflowBuilder(name="Research Workflow")
        .with_config(breadth=5, depth=10, timeout_seconds=300)
        .add_task(name="initialize", prompt="Initialize research on the topic")
        .add_parallel_tasks(
            task_specs=[{"name": f"research_{x}", "prompt": f"Research aspect {x}"} for x in "abc"],
            depends_on=["initialize"],
        )
        .add_task(
            name="synthesize",
            prompt="Synthesize all research findings",
            depends_on=["research_a", "research_b", "research_c"],
        )
        .build()
    )
    assert spec.config.breadth == 5
    assert build_graph(spec).levels() == [
        ["initialize"],
        ["research_a", "research_b", "research_c"],
        ["synthesize"],
    ]


def test_build_validates_like_a_spec_file():
    with pytest.raises(SpecError, match="depends on 'nope', which does not exist"):
        WorkflowBuilder("w").add_task("a", "p", depends_on=["nope"]).build()
    with pytest.raises(SpecError, match="field 'config.breadth'"):
        WorkflowBuilder("w").with_config(breadth=-1).add_task("a", "p").build()
