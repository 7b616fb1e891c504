"""Plan-execute-reflect on real Prefect with the simulated model: rounds, repairs, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from promptdag.api import arun_objective, run_objective

EXAMPLES = Path(__file__).parents[2] / "examples"
FAST = {"retry_backoff_seconds": 0}


async def test_one_round_plans_runs_reflects_and_answers():
    result = await arun_objective("Assess solar power for a small town", config=FAST)
    assert (result.status, result.stop_reason, len(result.rounds)) == ("completed", "complete", 1)
    plan = result.rounds[0].plan
    assert [t.name for t in plan.tasks][-1] == "Synthesize findings"
    assert plan.tasks[-1].depends_on == [t.name for t in plan.tasks[:-1]]
    assert result.rounds[0].reflection and result.rounds[0].reflection.complete
    assert result.final_answer
    # Planning, reflection and synthesis are counted on top of the tasks' own usage.
    task_usage = result.rounds[0].result.usage.input_tokens  # type: ignore[union-attr]
    assert result.usage.input_tokens > task_usage > 0


async def test_follow_up_rounds_stop_at_the_depth_cap_and_say_so():
    result = await arun_objective(
        "Map the market", config={**FAST, "depth": 3, "model_options": {"extra_rounds": 5}}
    )
    assert (result.status, result.stop_reason, len(result.rounds)) == (
        "completed", "depth_reached", 3)
    round2 = result.rounds[1]
    follow_up = round2.plan.tasks[0]
    assert follow_up.depends_on == ["Synthesize findings"]  # a task of round 1
    earlier = result.rounds[0].result.task("Synthesize findings").result  # type: ignore[union-attr]
    assert earlier and earlier in (round2.result.tasks[0].prompt or "")  # type: ignore[union-attr]


async def test_an_invalid_plan_is_sent_back_once_and_repaired():
    result = await arun_objective("Plan a trip", config={**FAST, "model_options":
                                                         {"invalid_plans": 1}})
    assert result.status == "completed" and result.rounds[0].result is not None


async def test_a_plan_invalid_twice_fails_the_round_with_a_clear_message():
    result = await arun_objective("Plan a trip", config={**FAST, "stream_plan": False,
                                                         "model_options": {"invalid_plans": 2}})
    assert (result.status, result.stop_reason, result.rounds) == ("failed", "failed", [])
    assert result.error and result.error.startswith("planning failed: ")
    assert "invalid Plan twice" in result.error and "'prompt'" in result.error


async def test_the_reflector_sees_failed_tasks(probe):
    config = {**FAST, "model": "probe:x", "planner_model": "simulated",
              "reflector_model": "simulated", "synthesiser_model": "simulated",
              "model_options": {"fail_tasks": ["Research b"]}}
    result = await arun_objective("Compare a and b", context={"focus_areas": ["a", "b"]},
                                  config=config)
    outcome = result.rounds[0].result
    assert outcome is not None and outcome.task("Research b").status == "failed"
    assert "Failed: Research b." in (result.rounds[0].reflection.critique)  # type: ignore[union-attr]
    assert result.status == "completed"  # the rest of the work still answers the objective


def test_the_seed_plan_execute_request_runs_and_research_overlaps():
    body = json.loads((EXAMPLES / "seed_plan_execute_request.json").read_text())
    body["config"]["model_options"] = {"latency_s": 0.3}
    result = run_objective(body)
    assert result.status == "completed"
    tasks = result.rounds[0].result.tasks  # type: ignore[union-attr]
    research = [t for t in tasks if t.name.startswith("Research ")]
    assert [t.name for t in research] == ["Research diagnostics", "Research treatment",
                                          "Research patient care"]
    latest_start = max(t.started_at for t in research)  # type: ignore[type-var]
    earliest_end = min(t.finished_at for t in research)  # type: ignore[type-var]
    assert latest_start < earliest_end  # all three ran at the same time


def test_the_objective_cli_prints_the_result_json(prefect_api: str, tmp_path: Path):
    env = {**os.environ, "PREFECT_API_URL": prefect_api,
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "promptdag.cli", "objective", "--request",
         str(EXAMPLES / "seed_plan_execute_request.json"), "--depth", "2", "--json"],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["stop_reason"] == "complete"
    assert result["rounds"][0]["plan"]["tasks"][0]["name"] == "Research diagnostics"
    assert set(result["usage"]) == {"input_tokens", "output_tokens", "cost_usd"}
    assert "Traceback" not in done.stderr


async def test_a_failing_reflector_still_ends_with_an_answer_from_the_work_done():
    result = await arun_objective(
        "Compare heat pumps", config={**FAST, "max_retries": 0,
                                      "model_options": {"fail_roles": ["reflector"]}})
    assert (result.status, result.stop_reason) == ("completed", "reflection_failed")
    assert "reflection failed" in (result.error or "")
    assert result.final_answer


async def test_a_failing_synthesiser_leaves_the_final_results_as_the_answer():
    result = await arun_objective(
        "Compare heat pumps", config={**FAST, "max_retries": 0,
                                      "model_options": {"fail_roles": ["synthesiser"]}})
    final = result.rounds[-1].result.task("Synthesize findings").result  # type: ignore[union-attr]
    assert final and final in (result.final_answer or "")
    assert "synthesis failed" in (result.error or "")
