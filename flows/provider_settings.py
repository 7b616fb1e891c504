"""Provider settings checked where a run starts, so a worker that lacks them fails the run at
once with what is missing (a key, or a base URL: they are not the same fix) and where a worker
gets it, instead of failing every task with the same error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.context import FlowRunContext

from promptdag.errors import ConfigError

ON_A_WORKER = (
    "a deployment run reads provider settings where its worker runs it: put the variables in "
    "the work pool's or the deployment's job_variables env (prefect.yaml), or keys in Prefect "
    "Secret blocks (PROMPTDAG_OPENAI_API_KEY_SECRET, PROMPTDAG_ANTHROPIC_API_KEY_SECRET); "
    "see docs/deployments.md"
)


@contextmanager
def provider_settings_checked() -> Iterator[None]:
    """Around the check of a run's models: in a deployment run, a missing setting also says
    how a worker gets it."""
    try:
        yield
    except ConfigError as exc:
        context = FlowRunContext.get()
        if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
            raise
        raise ConfigError(f"{exc} ({ON_A_WORKER})") from None
