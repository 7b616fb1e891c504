"""Budgets: when the next call could pass `max_total_tokens` (of a run, of a batch row, of an
objective), no new call starts; the run ends with stop_reason budget and keeps what finished.

The loopback server answers every call with a fixed usage, so the arithmetic is exact: a call
is admitted while (tokens spent) + (its estimate: prompt tokens + max_tokens) fits.
"""

from __future__ import annotations

import json

import pytest

from promptdag.api import arun, arun_objective
from promptdag.cli._common import budget_line, exit_code
from promptdag.llm.base import estimate_tokens
from tests.providers.servers import OpenAIServer, Reply

pytestmark = pytest.mark.usefixtures("prefect_api")


def spec(tasks: list[str], **config: object) -> dict[str, object]:
    return {
        "name": "budgeted",
        "config": {"breadth": 1, "model": "openai:gpt-4o-mini", "model_options": {"max_tokens": 20},
                   "retry_backoff_seconds": 0, "reuse_results": False, "infer_dependencies": False,
                   **config},
        "tasks": [{"name": name, "prompt": name, "task_type": "parallel"} for name in tasks],
    }


async def test_a_run_starts_no_call_that_could_pass_its_token_budget(openai_server: OpenAIServer):
    openai_server.usage = (10, 5)  # 15 tokens a call; each estimated at 1 + 20 before
    assert estimate_tokens("t0") + 20 == 21
    result = await arun(spec([f"t{i}" for i in range(10)], max_total_tokens=100))
    # Calls start while 15 * k + 21 <= 100: six of them, then none.
    assert len(openai_server.requests) == 6
    assert result.stop_reason == "budget" and result.status == "failed"
    assert [t.status for t in result.tasks] == ["completed"] * 6 + ["cancelled"] * 4
    assert all(t.result for t in result.tasks[:6])  # finished work kept
    assert result.usage.input_tokens + result.usage.output_tokens == 90
    assert "max_total_tokens 100" in str(result.tasks[6].error)
    line = budget_line(result)
    assert "\n" not in line and line.startswith("stopped: budget: workflow 'budgeted'")
    assert exit_code(result) == 1


async def test_each_row_of_a_batch_has_its_own_budget(openai_server: OpenAIServer):
    openai_server.usage = (10, 5)
    workflow = {
        "name": "rows",
        "config": {"breadth": 1, "model": "openai:gpt-4o-mini",
                   "model_options": {"max_tokens": 20}, "retry_backoff_seconds": 0,
                   "reuse_results": False, "infer_dependencies": False,
                   "row_max_total_tokens": 40},
        "tasks": [{"name": n, "prompt": f"{n} {{{{ n }}}}", "task_type": "parallel"}
                  for n in ("a", "b", "c")],
    }
    rows = [{"id": f"r{i}", "n": i} for i in range(3)]
    result = await arun(workflow, data=rows)
    # Per row: 0 + 22 and 15 + 22 fit in 40, 30 + 22 does not: two calls a row.
    assert len(openai_server.requests) == 6
    assert result.rows is not None and [r.status for r in result.rows] == ["failed"] * 3
    for row in ("r0", "r1", "r2"):
        statuses = sorted(t.status for t in result.tasks if t.name.startswith(f"[{row}]"))
        assert statuses == ["cancelled", "completed", "completed"]
    assert result.stop_reason == "budget" and "row 'r" in str(result.budget)


async def test_an_objective_budget_holds_across_its_roles_and_rounds(
    openai_server: OpenAIServer,
):
    plan = {"tasks": [
        {"name": "Rivers", "prompt": "List the longest rivers", "depends_on": []},
        {"name": "Lakes", "prompt": "List the largest lakes", "depends_on": []},
        {"name": "Summary", "prompt": "Summarise them", "depends_on": ["Rivers", "Lakes"]},
    ]}
    openai_server.usage = (1000, 0)  # every call spends 1,000 tokens
    openai_server.script(Reply(content=json.dumps(plan)))
    result = await arun_objective("Rivers and lakes", config={
        "model": "openai:gpt-4o-mini", "model_options": {"max_tokens": 20}, "breadth": 2,
        "depth": 3, "retry_backoff_seconds": 0, "infer_dependencies": False,
        "max_total_tokens": 4000,
    })
    # The plan and the round's three tasks spend 4,000; the reflection (its estimate alone is
    # more than 2,000 tokens: room for a structured answer) could pass it, so it never starts,
    # nor does the synthesis: the answer is the final results.
    assert len(openai_server.requests) == 4
    assert result.stop_reason == "budget" and result.status == "failed"
    assert len(result.rounds) == 1 and result.rounds[0].result is not None
    assert [t.status for t in result.rounds[0].result.tasks] == ["completed"] * 3
    assert result.usage.input_tokens == 4000
    assert "max_total_tokens 4000" in str(result.error) and result.final_answer
