"""Structured-output modes: which one a server accepts, learnt once per endpoint and model.

Servers differ in how they can be held to a JSON schema. OpenAI and llama.cpp take the native
`json_schema` response format; llama-cpp-python's server answers it with HTTP 500 (`Input should
be 'text' or 'json_object'`) but takes JSON mode with a schema (`{"type": "json_object",
"schema": ...}`, as vLLM does too); others take neither, and then the schema goes in the prompt
and the first JSON value of the answer (fenced, or embedded in prose) is taken. Anthropic has a
forced tool, or the prompt.

`negotiate` tries the modes best first. A server that rejects a mode (an error answer that names
`response_format`, `json_schema`, `json_object` or `tool`; for Anthropic, an answer that ignores
the forced tool) moves the call down to the next mode at once: no error is raised and no retry
is spent. What works is remembered per (provider, endpoint, model) for the rest of the process,
so the next call goes straight to it. A model option pins one mode (`structured_output`).

A connection the server drops right after a constrained request (llama-cpp-python's process dies
when its grammar compiler gives up on a schema) also moves the call down a mode: it says the
server cannot take that mode, not that the server is down (a refused connection is an outage,
see `outage`). A server that will not stream a constrained answer (an error answer naming
`stream`) is remembered too: streamed requests to it are asked whole (`refuse_stream`).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from promptdag.errors import ProviderError
from promptdag.llm.base import Completion, Usage

_REJECTION_WORDS = ("response_format", "json_schema", "json schema", "json_object", "tool")
_lock = threading.Lock()
_working: dict[tuple[str, str, str], str] = {}
_no_stream: set[tuple[str, str, str]] = set()


class ModeRejected(Exception):
    """The server would not answer in this mode; `error` is what to raise when no mode is left,
    `usage` what the rejected call cost (an ignored tool still costs its tokens)."""

    def __init__(self, error: ProviderError, usage: Usage | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.usage = usage or Usage()


def rejects_mode(status: int, text: str) -> bool:
    """True when an error answer says the server does not take the structured mode it was sent
    (4xx or 5xx whose text names the response format or the tool). Keys, quotas and rate
    limits (401, 403, 429) say nothing about the mode."""
    if status < 400 or status in (401, 403, 408, 409, 429):
        return False
    lowered = text.lower()
    return any(word in lowered for word in _REJECTION_WORDS)


def known_mode(provider: str, endpoint: str, model: str) -> str | None:
    """The mode that last worked (or the best one not yet rejected) for this endpoint and model."""
    with _lock:
        return _working.get((provider, endpoint, model))


def rejects_stream(status: int, text: str) -> bool:
    """True when an error answer says the server does not stream this request: it names
    `stream` (outside file paths: servers put tracebacks in their answers)."""
    if status < 400 or status in (401, 403, 408, 409, 429):
        return False
    words = " ".join(w for w in text.lower().split() if "/" not in w)
    return re.search(r"\bstream(ing)?\b", words) is not None


def streams(key: tuple[str, str, str]) -> bool:
    """False once this endpoint and model refused to stream a constrained answer."""
    with _lock:
        return key not in _no_stream


def refuse_stream(key: tuple[str, str, str]) -> bool:
    """Remember that this endpoint and model do not stream constrained answers; True the first
    time (the caller says so once in the log)."""
    with _lock:
        first = key not in _no_stream
        _no_stream.add(key)
        return first


async def negotiate(
    key: tuple[str, str, str],
    pinned: str,
    ladder: tuple[str, ...],
    send: Callable[[str, bool], Awaitable[Completion]],
) -> Completion:
    """Send in the best mode this server takes: `send(mode, last)` raises ModeRejected to move
    down (`last` tells it no mode is left, so it should make the most of the answer it got)."""
    if pinned != "auto":
        modes = [pinned]
    else:
        start = known_mode(*key)
        modes = list(ladder[ladder.index(start) :] if start in ladder else ladder)
    spent = Usage()
    for index, mode in enumerate(modes):
        last = index == len(modes) - 1
        try:
            completion = await send(mode, last)
        except ModeRejected as rejected:
            if last:
                raise rejected.error from None
            spent = spent + rejected.usage
            if pinned == "auto":
                with _lock:
                    _working[key] = modes[index + 1]
            continue
        if pinned == "auto":
            with _lock:
                _working[key] = mode
        if spent.input_tokens or spent.output_tokens:
            completion = completion.model_copy(update={"usage": completion.usage + spent})
        return completion
    raise AssertionError("unreachable: the last mode raises or returns")


def schema_instructions(schema: dict[str, Any]) -> str:
    """What a prompt says when the server cannot hold the model to the schema itself: the
    answer's shape as a template to fill in (small models copy a schema's own text, but fill
    in a template), plus the enums and descriptions the template cannot show. The repair round
    shows the full schema."""
    plain = inline_refs(schema)
    shape = skeleton(plain)
    kind = "object" if isinstance(shape, dict) else "array" if isinstance(shape, list) else "value"
    notes = "".join(f"\n- {path}: {note}" for path, note in _field_notes(plain, ""))
    return (
        f"Reply with only a JSON {kind} of this shape: {json.dumps(shape, ensure_ascii=False)}"
        "\nReplace the placeholder values." + (f"\nFields:{notes}" if notes else "")
    )


def skeleton(node: Any) -> Any:
    """A template of the value a schema describes: placeholders of each field's type."""
    if not isinstance(node, dict):
        return "..."
    if node.get("enum"):
        return node["enum"][0]
    if "const" in node:
        return node["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in node.get(key, []) if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return skeleton(options[0])
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in node:
        return {name: skeleton(sub) for name, sub in node.get("properties", {}).items()}
    if kind == "array":
        return [skeleton(node.get("items", {}))]
    return {"integer": 0, "number": 0.0, "boolean": False, "null": None}.get(str(kind), "...")


def _field_notes(node: Any, path: str) -> list[tuple[str, str]]:
    if not isinstance(node, dict):
        return []
    notes: list[tuple[str, str]] = []
    parts = []
    if path and node.get("description"):
        parts.append(str(node["description"]))
    if path and node.get("enum"):
        parts.append("one of " + ", ".join(json.dumps(v) for v in node["enum"]))
    if parts:
        notes.append((path, "; ".join(parts)))
    for name, sub in (node.get("properties") or {}).items():
        notes.extend(_field_notes(sub, f"{path}.{name}" if path else name))
    if isinstance(node.get("items"), dict):
        notes.extend(_field_notes(node["items"], f"{path}[]" if path else "[]"))
    return notes


def with_instructions(prompt: str, schema: dict[str, Any]) -> str:
    return f"{prompt}\n\n{schema_instructions(schema)}"


def extract_json(text: str) -> str | None:
    """The first JSON object or array in an answer: a fenced block's, else one embedded in
    prose. None when there is none."""
    decoder = json.JSONDecoder()
    candidates = [m.group(1) for m in re.finditer(r"```[a-zA-Z]*\s*\n?(.*?)```", text, re.S)]
    candidates.append(text)
    for candidate in candidates:
        for match in re.finditer(r"[\[{]", candidate):
            try:
                value, _ = decoder.raw_decode(candidate, match.start())
            except ValueError:
                continue
            return json.dumps(value, ensure_ascii=False)
    return None


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with local `$ref`s (`#/$defs/...`, `#/definitions/...`) replaced by what they
    name, for servers and prompts that do not follow references. A recursive schema is
    returned as it is (it cannot be inlined)."""
    defs: dict[str, Any] = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    if not defs:
        return schema
    recursive = False

    def walk(node: Any, seen: frozenset[str]) -> Any:
        nonlocal recursive
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
            name = ref.rsplit("/", 1)[-1]
            if name in seen or name not in defs:
                recursive = True
                return node
            rest = {k: walk(v, seen) for k, v in node.items() if k != "$ref"}
            return {**walk(defs[name], seen | {name}), **rest}
        return {k: walk(v, seen) for k, v in node.items() if k not in ("$defs", "definitions")}

    inlined = walk(schema, frozenset())
    return schema if recursive else inlined  # type: ignore[no-any-return]
