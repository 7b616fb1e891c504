"""`simulated`: a deterministic offline model, the embedded default.

No key, no network. Its answer is derived from the prompt, so a downstream answer changes when an
upstream answer changes; tokens are estimated from text length. Options build any timing or
failure profile for tests and benchmarks:

- `latency_s`: seconds each call takes (awaited, so a timeout can interrupt it);
- `failure_rate`: probability (0..1) that a call fails with a retryable error, decided by a hash
  of (seed, prompt, attempt) so runs are reproducible;
- `fail_first`: the first N attempts of each task fail with a retryable error;
- `seed`: varies the failure draws;
- `max_tokens`: an answer longer than this (estimated) is cut and reports `finish_reason:
  "length"`, as a real model stopped by its token limit does;
- `context_window`: what `context_window()` reports (default: None, unknown).

It streams too (`stream`): the same answer in pieces of `STREAM_PIECE_CHARS` characters, the
call's `latency_s` spread evenly over them, so a streamed answer's first piece arrives long
before its last, deterministically.

Structured requests (planning, reflection, dependency analysis) are answered by
`_simulated_roles`, which documents its own options.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from promptdag.errors import PermanentProviderError, RetryableProviderError
from promptdag.llm._simulated_roles import structured_answer, task_output
from promptdag.llm.base import Completion, CompletionRequest, TextSink, Usage, estimate_tokens
from promptdag.llm.options import SimulatedOptions, validate_options

STREAM_PIECE_CHARS = 24


def _draw(*parts: object) -> float:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class SimulatedModel:
    """Deterministic stand-in for an LLM (see module docstring)."""

    def __init__(self, name: str = "", options: dict[str, Any] | None = None) -> None:
        self.name = "simulated" + (f":{name}" if name else "")
        self.options = parse_options(options or {})

    async def complete(self, request: CompletionRequest) -> Completion:
        if self.options.latency_s:
            await asyncio.sleep(self.options.latency_s)
        return self._answer(request)

    async def stream(self, request: CompletionRequest, on_text: TextSink) -> Completion:
        """The answer `complete` gives, in pieces: failures come before any text."""
        completion = self._answer(request)
        text = completion.text
        pieces = [text[i:i + STREAM_PIECE_CHARS] for i in range(0, len(text), STREAM_PIECE_CHARS)]
        for piece in pieces:
            if self.options.latency_s:
                await asyncio.sleep(self.options.latency_s / len(pieces))
            on_text(piece)
        return completion

    def _answer(self, request: CompletionRequest) -> Completion:
        opts = self.options
        if request.attempt <= opts.fail_first:
            raise RetryableProviderError(
                f"simulated transient failure (attempt {request.attempt} of the first "
                f"{opts.fail_first} that fail)"
            )
        if opts.failure_rate and _draw(opts.seed, request.prompt, request.attempt) < (
            opts.failure_rate
        ):
            raise RetryableProviderError(
                f"simulated transient failure (failure_rate {opts.failure_rate})"
            )
        role = str(request.metadata.get("role", ""))
        if role in opts.fail_roles:
            raise PermanentProviderError(f"simulated permanent failure for role {role!r}")
        text = answer(request.prompt)
        if request.response_schema is not None and role == "task":
            text = task_output(
                request.metadata, request.response_schema, opts.model_dump(), request.prompt
            )
        elif request.response_schema is not None:
            structured = structured_answer(role, request.metadata, opts.model_dump())
            if structured is None:
                raise PermanentProviderError(
                    f"simulated model cannot answer a structured request for role {role!r}"
                )
            text = structured
        finish_reason = "stop"
        limit = request.max_tokens or opts.max_tokens
        if limit is not None and estimate_tokens(text) > limit:
            text, finish_reason = text[: 3 * limit - 1], "length"  # estimates to `limit`
        return Completion(
            text=text,
            model=self.name,
            finish_reason=finish_reason,
            usage=Usage(
                input_tokens=estimate_tokens(request.prompt),
                output_tokens=min(estimate_tokens(text), limit or estimate_tokens(text)),
            ),
        )

    async def context_window(self) -> int | None:
        """The `context_window` option: the simulated model has no window of its own."""
        return self.options.context_window


def parse_options(options: dict[str, Any]) -> SimulatedOptions:
    return validate_options("simulated", SimulatedOptions, options)


def answer(prompt: str) -> str:
    """The simulated answer: a digest of the whole prompt and an echo of its first line."""
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    first_line = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    if len(first_line) > 120:
        first_line = first_line[:117] + "..."
    return f"[simulated {digest}] Answer to: {first_line}"
