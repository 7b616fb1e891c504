"""Prefect tasks: run one prompt task (`run_prompt`), and the roles of an objective (plan,
reflect, synthesise, infer dependencies); their options are declared in `task_options`."""

from promptdag.tasks.run_prompt import PromptJob, PromptOutput, run_prompt
from promptdag.tasks.task_options import prompt_task_options

__all__ = ["PromptJob", "PromptOutput", "prompt_task_options", "run_prompt"]
