"""Prefect flows: `run_workflow` (the one scheduler)."""

from flows.run_workflow import run_workflow

__all__ = ["run_workflow"]
