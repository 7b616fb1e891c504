"""Pure parts of the batch API path: DAG levels, line ids, the poll's backoff, the discount."""

from __future__ import annotations

from promptdag.engine.batch import expand
from promptdag.flows.batch_levels import levels
from promptdag.llm.batch_api import custom_id, flat_body, next_poll
from promptdag.llm.pricing import BATCH_DISCOUNT, batch_cost_usd, cost_usd
from promptdag.spec.graph import build_graph
from promptdag.spec.models import parse_spec


def test_a_level_is_the_longest_chain_of_dependencies_above_a_task():
    spec = parse_spec({"name": "levels", "tasks": [
        {"name": "A", "prompt": "a {{ doc }}", "depends_on": []},
        {"name": "B", "prompt": "b", "depends_on": ["A"]},
        {"name": "C", "prompt": "c", "depends_on": ["A", "B"]},
        {"name": "D", "prompt": "d", "depends_on": []}]})
    batch = expand(spec, [{"doc": "x"}, {"doc": "y"}])
    level = levels(build_graph(batch.spec))
    assert level == {f"[{row}] {task}": depth for row in ("0", "1")
                     for task, depth in (("A", 0), ("B", 1), ("C", 2), ("D", 0))}


def test_line_ids_are_stable_distinct_and_in_anthropics_alphabet():
    ids = {custom_id(f"[{i}] Read") for i in range(1000)}
    assert len(ids) == 1000 and custom_id("[0] Read") == custom_id("[0] Read")
    assert all(len(i) <= 64 and i.replace("-", "").isalnum() for i in ids)


def test_extra_body_travels_inside_the_line_as_the_sdk_would_send_it():
    assert flat_body({"model": "m", "extra_body": {"top_k": 3}}) == {"model": "m", "top_k": 3}


def test_the_poll_backs_off_to_its_limit():
    waits = [10.0]
    for _ in range(12):
        waits.append(next_poll(waits[-1], 300))
    assert waits[1] == 15 and waits[-1] == 300 and waits == sorted(waits)


def test_a_batch_answer_costs_the_discounted_price():
    full = cost_usd("openai:gpt-4o-mini", 1_000_000, 1_000_000)
    assert full > 0 and batch_cost_usd("openai:gpt-4o-mini", 1_000_000, 1_000_000) == (
        full * BATCH_DISCOUNT)
