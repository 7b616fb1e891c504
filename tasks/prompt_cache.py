"""Resume: a finished task's result is reused by any later run that would ask the same thing.

Prefect persists each completed `run_prompt` result under a key computed here. The key is the
workflow's own data: workflow name, task name, prompt template and context, the upstream
results it is rendered with (so the rendered prompt), the model chain, the options and the
output schema. It deliberately leaves out what Prefect's DEFAULT policy includes: the run id
(which would make every new run miss) and the task function's source (which would make every
user's finished work miss after a promptdag release). Changing a prompt or an upstream result
changes the key of that task and, through their rendered prompts, of its dependents only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext

KEY_VERSION = "promptdag-v1"  # bump only if the meaning of a cached result changes


@dataclass
class WorkflowDataPolicy(CachePolicy):
    """Cache key = hash of what determines the model's answer (see module docstring)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return prompt_cache_key(inputs.get("job"), inputs.get("upstream"), inputs.get("outputs"))


def prompt_cache_key(job: Any, upstream: Any, outputs: Any) -> str:
    data = job.model_dump(mode="json") if hasattr(job, "model_dump") else job
    payload = json.dumps(
        {"v": KEY_VERSION, "job": data, "upstream": upstream or {}, "outputs": outputs or {}},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return f"{KEY_VERSION}-{hashlib.sha256(payload.encode()).hexdigest()}"


PROMPT_CACHE = WorkflowDataPolicy()
