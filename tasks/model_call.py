"""The one path from a Prefect task to a model: workflow tasks and every role take it.

Whoever asks (a workflow task, the planner, the reflector, the synthesiser, the dependency
analyser), a call gets the same treatment:

- **provider limits**: a slot of the provider's cross-run limit, when one is configured, and
  each HTTP call paced and budgeted (tasks/paced_model.py);
- **HTTP timeout below the task timeout**: 90% of what is left of the attempt's timeout, so a
  stuck socket read fails as a retryable provider timeout, with the provider's name, before
  Prefect's own timeout fires;
- **our own copy of the task timeout**, for runners where Prefect does not enforce it;
- **a prompt that fits**: `prompt_budget` says how many characters of prompt the model's
  context window leaves room for, after the answer's `max_tokens`;
- **keys**: a configured key echoed in an answer is masked before anything stores it;
- **errors**: provider errors carry the attempt number; anything unexpected is a permanent error
  (a bug or a misconfiguration is never worth a retry).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from prefect.context import TaskRunContext
from prefect.runtime import task_run as current_task_run

from promptdag.errors import PermanentProviderError, ProviderError, RetryableProviderError
from promptdag.llm.base import CompletionRequest, Model, context_window_of, estimate_tokens
from promptdag.llm.keys import KeyMasking
from promptdag.llm.registry import get_model
from promptdag.settings import get_settings
from promptdag.tasks.paced_model import PacedModel
from promptdag.tasks.provider_limits import provider_slot

HTTP_TIMEOUT_SHARE = 0.9  # of the time left in the attempt
OWN_TIMEOUT_SLACK = 1.05  # see enforce_timeout
CONTEXT_MARGIN_TOKENS = 64  # chat template and role markers around the prompt
T = TypeVar("T")


async def enforce_timeout(call: Coroutine[Any, Any, T]) -> T:
    """Our own copy of the task timeout, a little looser than Prefect's.

    Locally Prefect's timeout fires first and nothing changes. Where Prefect does not enforce
    `timeout_seconds` (task runs on a Dask cluster, PrefectHQ/prefect#13004) this one still stops
    a hanging call, as a retryable failure.
    """
    context = TaskRunContext.get()
    limit = context.task.timeout_seconds if context else None
    if not limit:
        return await call
    try:
        return await asyncio.wait_for(call, timeout=limit * OWN_TIMEOUT_SLACK)
    except asyncio.TimeoutError:
        raise RetryableProviderError(f"timed out after {limit:g} s") from None


def http_timeout(started: float) -> float | None:
    """90% of what is left of this attempt's task timeout (None outside a timed task)."""
    context = TaskRunContext.get()
    limit = context.task.timeout_seconds if context else None
    if not limit:
        return None
    return max(0.05, HTTP_TIMEOUT_SHARE * (limit - (time.monotonic() - started)))


class ModelCall:
    """One attempt of a task at one model (see module docstring).

    Build it at the start of the attempt, build requests with `request` inside `run`, so the
    HTTP timeout is what is left after waiting for a provider slot.
    """

    def __init__(
        self,
        model: str,
        options: dict[str, Any],
        task_name: str,
        min_answer_tokens: int | None = None,
    ) -> None:
        """`min_answer_tokens`: room the answer needs whatever the model's `max_tokens` option
        says (a plan as JSON), at most half the model's context window."""
        self.name = model
        self.options = options
        self.task_name = task_name
        self.started = time.monotonic()
        self.attempt = current_task_run.run_count or 1
        # echoed keys never stored; every call paced and budgeted (paced_model.py)
        self.model: Model = KeyMasking(PacedModel(get_model(model, options), options))
        self.min_answer_tokens = min_answer_tokens
        self.answer_tokens: int | None = None  # set by prompt_budget when raised

    async def prompt_budget(self, system: str | None = None) -> int | None:
        """Characters of prompt that fit the model's context window with room for the answer
        (None when the window is unknown: nothing is shortened)."""
        window = await context_window_of(self.model)
        answer = int(self.options.get("max_tokens") or get_settings().default_max_tokens)
        if self.min_answer_tokens and answer < self.min_answer_tokens:
            answer = self.min_answer_tokens
            if window:
                answer = min(answer, window // 2)
            self.answer_tokens = answer
        if not window:
            return None
        tokens = window - answer - CONTEXT_MARGIN_TOKENS - (estimate_tokens(system) if system
                                                            else 0)
        # estimate_tokens counts about three characters a token: stay on its side of the line
        return max(0, (tokens - 1) * 3)

    def request(
        self, prompt: str, metadata: dict[str, Any], system: str | None = None
    ) -> CompletionRequest:
        return CompletionRequest(
            prompt=prompt,
            system=system,
            options=self.options,
            attempt=self.attempt,
            task_name=self.task_name,
            max_tokens=self.answer_tokens,
            timeout_seconds=http_timeout(self.started),
            metadata=metadata,
        )

    async def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Await `call` (which builds its requests and asks `self.model`) under the provider's
        limit and the task's timeout, with errors as the engine expects them."""

        abandoned = False

        async def limited() -> T:
            async with provider_slot(self.name):
                if abandoned:  # the attempt ended while this waited for its slot
                    raise asyncio.CancelledError
                return await call

        try:
            try:
                return await enforce_timeout(limited())
            finally:
                abandoned = True
                # Close `call` only if nothing started it (a slot or timeout error came first:
                # no "never awaited" warning). One a cancelled wait_for left running is the
                # inner task's to finish: closing it under that task made it fail later with
                # "cannot reuse already awaited coroutine", an exception nobody retrieved.
                if inspect.getcoroutinestate(call) == inspect.CORO_CREATED:
                    call.close()
        except ProviderError as exc:
            exc.attempts = self.attempt
            raise
        except TimeoutError:
            raise  # Prefect's timeout, or waiting for a provider slot: retryable
        except Exception as exc:
            if _being_cancelled():  # the HTTP stack tripped over a timeout's cancellation
                raise asyncio.CancelledError() from None
            error = PermanentProviderError(f"{type(exc).__name__}: {exc}")
            error.attempts = self.attempt
            raise error from exc


def _being_cancelled() -> bool:
    """Whether this asyncio task has a cancellation pending (Prefect's task timeout cancels
    it). An error raised meanwhile, such as httpcore's lock failing to release as the
    cancellation unwinds a trickling read, is a consequence of the timeout, not a failure of
    its own: it must end as the timeout does, not as a permanent error with a traceback."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return bool(cancelling and cancelling())
