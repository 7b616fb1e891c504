"""Prefect flows: `run_workflow` (the one scheduler) and `plan_execute_reflect`."""

from promptdag.flows.plan_execute_reflect import plan_execute_reflect
from promptdag.flows.run_workflow import run_workflow

__all__ = ["plan_execute_reflect", "run_workflow"]
