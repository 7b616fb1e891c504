"""Prefect flows: `run_workflow` (the one scheduler) and `plan_execute_reflect`.

Both are imported on first use (PEP 562): `promptdag run` needs only `run_workflow`, and
importing the objective's flow (its planner, reflector and streamed planning) would add to
every run's start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promptdag.flows.plan_execute_reflect import plan_execute_reflect
    from promptdag.flows.run_workflow import run_workflow

__all__ = ["plan_execute_reflect", "run_workflow"]


def __getattr__(name: str) -> Any:
    if name == "run_workflow":
        from promptdag.flows.run_workflow import run_workflow

        return run_workflow
    if name == "plan_execute_reflect":
        from promptdag.flows.plan_execute_reflect import plan_execute_reflect

        return plan_execute_reflect
    raise AttributeError(f"module 'promptdag.flows' has no attribute {name!r}")
