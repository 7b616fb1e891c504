"""The `plan-execute-reflect` flow: an objective in, a synthesised answer out.

Round 1: the planner returns a DAG of tasks, streamed: each task starts as soon as it is
written and its dependencies are done (flows/streamed_plan.py; review mode waits for the whole
plan). Each round's tasks run as a `run-workflow` subflow (the one scheduler, visible as a
child run in the UI); the reflector then reads every result and
either declares the objective answered or adds follow-up tasks, until `depth` rounds. Finally
the synthesiser writes the answer. Every LLM call's usage is totalled.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, Failed, State

from promptdag.engine.budget import BudgetExhausted, ledger_for, use_ledger
from promptdag.engine.estimate import Estimate
from promptdag.engine.objective import (
    ObjectiveConfig,
    ObjectiveResult,
    Plan,
    PlannedTask,
    RoundResult,
    StopReason,
    plan_to_spec,
)
from promptdag.engine.results import TaskResult, WorkflowResult
from promptdag.errors import PromptDagError
from promptdag.flows.artifacts import RunView, slug
from promptdag.flows.lost_api import remember
from promptdag.flows.provider_settings import provider_settings_checked
from promptdag.flows.review import plan_estimate, review_plan
from promptdag.flows.run_workflow import run_workflow
from promptdag.flows.streamed_plan import PlannedRound, plan_and_start, with_dependencies
from promptdag.llm.base import Usage
from promptdag.llm.registry import preload
from promptdag.spec.validation import check_model_ready
from promptdag.tasks.plan_objective import plan_objective
from promptdag.tasks.prompt_cache import child_scope, current_scope
from promptdag.tasks.reflect_on_results import reflect_on_results
from promptdag.tasks.synthesise_answer import synthesise_answer
from promptdag.tasks.task_options import role_task_options


def spent_by(exc: BaseException) -> Usage:
    """What the calls of a failed role still cost (a plan or reflection invalid twice)."""
    spent = getattr(exc, "usage", None)
    return spent if isinstance(spent, Usage) else Usage()


def _flow_run_name() -> str:
    objective = str(flow_run.parameters.get("objective", "objective"))
    return objective if len(objective) <= 60 else objective[:57] + "..."


async def _synthesise(
    objective: str, context: dict[str, Any], tasks: list[TaskResult], config: ObjectiveConfig
) -> tuple[str, Usage, str | None]:
    """The synthesiser's answer; if it fails, the final tasks' results as they are (with the
    reason), so finished work is never lost for want of a last call."""
    try:
        synthesis = await synthesise_answer.with_options(
            **role_task_options(config, "synthesise answer")
        )(objective, context, tasks, config)
        return synthesis.answer, synthesis.usage, None
    except PromptDagError as exc:
        done = [t for t in tasks if t.status == "completed"]
        needed = {dep for t in done for dep in t.depends_on}
        finals = [t for t in done if t.name not in needed] or done
        answer = "\n\n".join(f"## {t.name}\n{t.result or ''}" for t in finals)
        return answer, Usage(), f"synthesis failed ({exc}): the answer is the final results"


async def _estimate(
    tasks: list[PlannedTask], config: ObjectiveConfig, results: dict[str, str]
) -> Estimate | None:
    """The round's estimate for its report; None if the plan cannot be checked here (running
    it then says why)."""
    try:
        return await plan_estimate(tasks, config, results, history=False)
    except PromptDagError:
        return None


@flow(
    name="plan-execute-reflect",
    flow_run_name=_flow_run_name,
    validate_parameters=False,  # `$ref` in a context is data, not a block: see run_workflow
    persist_result=True,  # `promptdag result RUN_ID` reads it back later, from any process
    result_serializer="json",
)
async def plan_execute_reflect(
    objective: str,
    context: dict[str, Any] | None = None,
    config: ObjectiveConfig | None = None,
    resume_scope: str | None = None,
) -> State[ObjectiveResult]:
    """Plan a DAG for `objective`, run it, reflect, repeat up to `config.depth` rounds, answer.

    Args:
        objective: what the user wants done.
        context: extra inputs for the planner (e.g. `focus_areas`).
        config: breadth, depth, models per role, retries and timeouts.
        resume_scope: whose finished work this run may reuse (tasks/prompt_cache.py): by
            default this flow run's own, so a retry reuses its plan, reflections and the
            finished tasks of its rounds; a resume passes the scope of the run it resumes.
    """
    context = dict(context or {})
    config = ObjectiveConfig.model_validate(config or {})  # a deployment run sends plain JSON
    with provider_settings_checked():  # keys and base URLs, before the planner is asked
        for model in config.models():
            check_model_ready(model, config.model_options)
    clock = time.perf_counter()
    usage = Usage()
    rounds: list[RoundResult] = []
    results: dict[str, str] = {}  # every finished task's text, for later rounds
    all_tasks: list[TaskResult] = []
    stop: StopReason = "depth_reached"
    error: str | None = None
    # Every call of every round and role counts against the objective's budget (the rounds'
    # schedulers and the roles' calls find it in this context).
    use_ledger(ledger_for("objective", config.max_cost_usd, config.max_total_tokens))
    models = [config.role_model(r) for r in ("planner", "reflector", "synthesiser")]
    models += [config.model] if isinstance(config.model, str) else list(config.model)
    await asyncio.to_thread(preload, models)  # SDK imports off the event loop
    view = await RunView("objective", objective, depth=config.depth).open()  # progress, tags
    approved_all = False  # review: the reviewer approved every later round too
    planning: PlannedRound | None = None
    try:
        if config.stream_plan and not config.review:
            planning = await plan_and_start(
                objective, context, config, f"{_flow_run_name()} (round 1)",
                child_scope(current_scope(), "round 1"))
            planned = planning.planner
            error = planning.error
        else:
            started = datetime.now(timezone.utc)
            planned = await plan_objective.with_options(
                **role_task_options(config, "plan (round 1)")
            )(objective, context, config)
            planning = PlannedRound(planned, started, datetime.now(timezone.utc))
        if planning.state is not None:
            usage = usage + planning.usage
            tasks = planning.tasks
        else:
            assert planned is not None  # only a started round survives a planning failure
            usage = usage + planned.usage
            tasks = planned.plan.tasks
        for round_no in range(1, config.depth + 1):
            edited, estimated = False, None
            if round_no == 1 and planning.state is not None:  # it ran while the plan streamed
                state = planning.state
                estimated = await _estimate(tasks, config, results)
            else:
                tasks, analysis_usage = await with_dependencies(tasks, config, round_no)
                usage = usage + analysis_usage
                if config.review and not approved_all:  # flows/review.py: pause for a person
                    reviewed = await review_plan(tasks, config, results, round_no,
                                                 view.key or slug(f"objective-{objective}"))
                    if reviewed.rejected:
                        stop, error = "rejected", reviewed.rejected
                        break
                    tasks, approved_all = reviewed.tasks, reviewed.approve_all
                    edited, estimated = reviewed.edited, reviewed.estimate
                    if edited:  # an edit without depends_on: inferred like a planner's
                        tasks, analysis_usage = await with_dependencies(tasks, config, round_no)
                        usage = usage + analysis_usage
                estimated = estimated or await _estimate(tasks, config, results)
                spec = plan_to_spec(tasks, f"{_flow_run_name()} (round {round_no})", config,
                                    results)
                state = await run_workflow(  # each round resumes with its objective
                    spec, resume_scope=child_scope(current_scope(), f"round {round_no}"),
                    return_state=True,
                )
            outcome = WorkflowResult.model_validate(await state.aresult(raise_on_failure=False))
            usage = usage + outcome.usage
            all_tasks.extend(outcome.tasks)
            for t in outcome.tasks:
                done = t.status == "completed"
                results[t.name] = (t.result or "") if done else f"[{t.status}: {t.error}]"
            current = RoundResult(round=round_no, plan=Plan(tasks=tasks), result=outcome,
                                  estimate=estimated, edited=edited)
            rounds.append(current)
            if outcome.stop_reason == "budget":
                stop, error = "budget", f"round {round_no}: {outcome.budget}"
                break
            if not any(t.status == "completed" for t in outcome.tasks):
                stop, error = "failed", f"round {round_no}: every task failed"
                break
            try:
                reflected = await reflect_on_results.with_options(
                    **role_task_options(config, f"reflect (round {round_no})")
                )(objective, all_tasks, results, round_no, config)
            except BudgetExhausted as exc:
                stop, error = "budget", f"round {round_no}: reflection not started: {exc}"
                break
            except PromptDagError as exc:  # the work done still gets its answer
                stop, error = "reflection_failed", f"round {round_no}: reflection failed: {exc}"
                usage = usage + spent_by(exc)
                break
            usage = usage + reflected.usage
            current.reflection = reflected.reflection
            if reflected.reflection.complete or not reflected.reflection.follow_up_tasks:
                stop = "complete"
                break
            tasks = reflected.reflection.follow_up_tasks
    except BudgetExhausted as exc:
        stop, error = "budget", f"not started: {exc}"
    except PromptDagError as exc:
        stop, error = "failed", str(exc)
        usage = usage + spent_by(exc)
        if not rounds:
            error = f"planning failed: {exc}"
    final = None
    try:
        if any(t.status == "completed" for t in all_tasks):  # some work done: always an answer
            final, synthesis_usage, problem = await _synthesise(objective, context, all_tasks,
                                                                config)
            usage = usage + synthesis_usage
            error = "; ".join(filter(None, [error, problem])) or None
    finally:
        view.close()
    nothing_done = not any(t.status == "completed" for t in all_tasks)
    first_round = rounds[0].result.tasks if rounds and rounds[0].result else []
    result = ObjectiveResult(
        objective=objective,
        status="failed" if stop in ("failed", "budget") or (stop == "rejected" and nothing_done)
        else "completed",
        stop_reason=stop,
        rounds=rounds,
        final_answer=final,
        error=error,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
        elapsed_seconds=round(time.perf_counter() - clock, 4),
        usage=usage,
        plan_streamed=planning is not None and planning.state is not None,
        planning_started_at=planning.started_at if planning else None,
        planning_finished_at=planning.finished_at if planning else None,
        first_task_started_at=min((t.started_at for t in first_round if t.started_at),
                                  default=None),
        plan_rejected=planning.planner.rejected if planning and planning.planner else [],
    )
    remember(flow_run.id, result)  # the caller's copy if the API goes away (flows/lost_api.py)
    await view.publish_objective(result)
    if result.status == "completed":
        return Completed(data=result, message=f"{stop} after {len(rounds)} round(s)")
    return Failed(data=result, message=error or "failed")


