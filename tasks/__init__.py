"""Prefect tasks: run one prompt task (more come with planning and reflection)."""

from promptdag.tasks.run_prompt import PromptJob, PromptOutput, prompt_task_options, run_prompt

__all__ = ["PromptJob", "PromptOutput", "prompt_task_options", "run_prompt"]
