"""Bounds on what promptdag reads, so hostile input costs one line and exit 2, not a hang, a
crash or gigabytes of memory.

A spec (and a sub-workflow, `--context-file` or `--request` file) must be a regular file of at
most `PROMPTDAG_MAX_SPEC_BYTES`; a YAML file is scanned event by event before it is built, so
an alias bomb or a file of millions of tiny values is refused after at most
`PROMPTDAG_MAX_SPEC_VALUES` values, depth `PROMPTDAG_MAX_SPEC_DEPTH`, without building it.
`check_spec` bounds the parsed spec (depth, its size as JSON, each prompt and context): it runs
in `validate_spec`, the one path `validate` and `run` share, so what `validate` accepts, `run`
runs. Every message names the limit and the setting that raises it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import BaseModel

from promptdag.errors import SpecError

# libyaml when present: faster and lighter than the pure-Python parser.
YamlLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Limits:
    spec_bytes: int
    values: int
    depth: int
    prompt_chars: int
    context_bytes: int


def current_limits() -> Limits:
    """The limits as the environment sets them now (PROMPTDAG_MAX_*)."""
    from promptdag.settings import get_settings

    s = get_settings()
    return Limits(s.max_spec_bytes, s.max_spec_values, s.max_spec_depth, s.max_prompt_chars,
                  s.max_context_bytes)


def over(source: str, problem: str, setting: str, limit: int) -> SpecError:
    """The one-line error for a bound: what is too big, the limit, the setting to raise."""
    env = f"PROMPTDAG_{setting.upper()}"
    return SpecError(f"{source}: {problem}: over the limit of {limit:,} "
                     f"(set {env} higher to allow it)")


_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket")]


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def read_text(
    path: str | Path, what: str = "spec", limit: int | None = None,
    setting: str = "max_spec_bytes",
) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes (PROMPTDAG_MAX_SPEC_BYTES by
    default; `setting` names the one that sets it), else SpecError.

    Never blocks and never reads more than the limit: a FIFO, a device or a directory is
    refused from its metadata, and a file that grows while read is cut at the limit + 1 byte.
    """
    file = Path(path)
    limit = current_limits().spec_bytes if limit is None else limit
    fd = _open_regular(file, what)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        kind = _not_regular(info.st_mode)
        if kind is not None:
            raise SpecError(f"{file}: is {kind}, expected a {what} file")
        if info.st_size > limit:
            raise over(str(file), f"{info.st_size:,} bytes", setting, limit)
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise SpecError(f"{file}: cannot read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise over(str(file), f"more than {limit:,} bytes", setting, limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{file}: cannot read: not UTF-8 text (byte {exc.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it


def _open_regular(file: Path, what: str) -> int:
    """A read-only descriptor of `file` if it is a regular file, else SpecError; opening never
    blocks (the caller checks the opened file again: the path may have changed meanwhile)."""
    try:
        kind = _not_regular(os.stat(file).st_mode)  # stat never opens: a FIFO cannot block it
        if kind is not None:
            raise SpecError(f"{file}: is {kind}, expected a {what} file")
        # O_NONBLOCK: should the path become a FIFO after the stat, opening it does not wait
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        return os.open(file, flags)
    except FileNotFoundError:
        raise SpecError(f"{file}: no such file") from None
    except PermissionError:
        raise SpecError(f"{file}: cannot read: permission denied") from None
    except OSError as exc:
        raise SpecError(f"{file}: cannot read: {exc.strerror or exc}") from None


def open_text(path: str | Path, what: str, limit: int, setting: str) -> TextIO:
    """A regular file of at most `limit` bytes opened to be read as UTF-8 text a piece at a
    time (a byte order mark dropped, newlines as written: `csv` wants them so), else SpecError;
    the checks of `read_text` without reading the whole."""
    file = Path(path)
    fd = _open_regular(file, what)
    info = os.fstat(fd)
    kind = _not_regular(info.st_mode)
    if kind is not None or info.st_size > limit:
        os.close(fd)
        if kind is not None:
            raise SpecError(f"{file}: is {kind}, expected a {what} file")
        raise over(str(file), f"{info.st_size:,} bytes", setting, limit)
    return open(fd, encoding="utf-8-sig", newline="")


def load_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load` with bounds: the events are counted first (aliases expanded, without
    building anything), so a bomb is refused in time and memory proportional to the limit."""
    scan_yaml(text, source)
    return yaml.load(text, Loader=YamlLoader)  # a safe loader (CSafeLoader or SafeLoader)


def scan_yaml(text: str, source: str, limits: Limits | None = None) -> None:
    """Count values, bytes and depth of a YAML stream as if every alias were expanded.

    An anchored node's expanded size is remembered, and each alias adds it again, so nested
    anchors (the "billion laughs") are measured by arithmetic, not by expansion.
    """
    from yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        ScalarEvent,
    )

    lim = limits or current_limits()
    sizes: dict[str, tuple[int, int, int]] = {}  # anchor -> (values, bytes, depth)
    stack: list[list[Any]] = []  # open collections: [values, bytes, depth below, anchor]
    values = size = 0
    for event in yaml.parse(text, Loader=YamlLoader):
        if isinstance(event, CollectionStartEvent):
            stack.append([1, 2, 1, event.anchor])
            values, size = values + 1, size + 2
            if len(stack) > lim.depth:
                raise over(source, f"values nested more than {lim.depth} deep",
                           "max_spec_depth", lim.depth)
        elif isinstance(event, CollectionEndEvent):
            n, b, d, anchor = stack.pop()
            if anchor:
                sizes[anchor] = (n, b, d)
            if stack:
                _add(stack[-1], n, b, d)
            continue
        elif isinstance(event, (ScalarEvent, AliasEvent)):
            if isinstance(event, ScalarEvent):
                n, b, d = 1, len(event.value) + 3, 0
                if event.anchor:
                    sizes[event.anchor] = (n, b, d)
            else:  # an alias not yet closed (a recursive one) counts as a value of depth 1
                n, b, d = sizes.get(event.anchor or "", (1, 8, 1))
            if len(stack) + d > lim.depth:
                raise over(source, f"values nested more than {lim.depth} deep (YAML aliases "
                           "expanded)", "max_spec_depth", lim.depth)
            if stack:
                _add(stack[-1], n, b, d)
            values, size = values + n, size + b
        else:
            continue
        if values > lim.values:
            raise over(source, f"more than {lim.values:,} values (mappings, lists, keys and "
                       "scalars, YAML aliases expanded)", "max_spec_values", lim.values)
        if size > lim.spec_bytes:
            raise over(source, f"more than {lim.spec_bytes:,} bytes with YAML aliases "
                       "expanded", "max_spec_bytes", lim.spec_bytes)


def _add(parent: list[Any], values: int, size: int, depth: int) -> None:
    parent[0] += values
    parent[1] += size
    parent[2] = max(parent[2], depth + 1)


def measure(data: Any, source: str, limits: Limits | None = None,
            max_bytes: int | None = None, setting: str = "max_spec_bytes",
            what: str = "") -> int:
    """Walk parsed data (dicts, lists, scalars, pydantic models' set fields) without recursion,
    counting each shared object every time it is reached (as serialising it would); refuse it
    past the values, depth or size limit. Returns its size in bytes, about as compact JSON (a
    lower bound). The walk stops at the first limit, so a bomb costs time bounded by the limit.
    """
    lim = limits or current_limits()
    budget = lim.spec_bytes if max_bytes is None else max_bytes
    stack: list[tuple[Any, int]] = [(data, 0)]
    values = size = 0
    while stack:
        item, depth = stack.pop()
        values += 1
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, (dict, list, tuple, BaseModel)):
            if depth + 1 > lim.depth:
                raise over(source, f"{what}values nested more than {lim.depth} deep",
                           "max_spec_depth", lim.depth)
            if isinstance(item, BaseModel):
                item = {k: getattr(item, k) for k in item.model_fields_set}
            size += 2
            if isinstance(item, dict):
                for key, value in item.items():
                    values += 1
                    size += (len(key) if isinstance(key, str) else 8) + 4
                    stack.append((value, depth + 1))
            else:
                size += len(item)
                stack.extend((value, depth + 1) for value in item)
        else:  # a number, a boolean or null: at least a byte of JSON (a lower bound)
            size += 4 if item is None or isinstance(item, bool) else 1
        if values > lim.values:
            raise over(source, f"{what}more than {lim.values:,} values (mappings, lists, keys "
                       "and scalars)", "max_spec_values", lim.values)
        if size > budget:
            raise over(source, f"{what}more than {budget:,} bytes as JSON", setting, budget)
    return size


def check_context(context: Any, source: str, limits: Limits | None = None) -> None:
    """A task's or an objective's context: at most PROMPTDAG_MAX_CONTEXT_BYTES as JSON."""
    lim = limits or current_limits()
    measure(context, source, lim, max_bytes=lim.context_bytes, setting="max_context_bytes",
            what="context: ")


def check_spec(spec: Any, source: str = "spec") -> None:
    """Bound a parsed WorkflowSpec: depth and values of the whole (sub-workflows inlined), its
    exact size as the JSON a run stores or sends, and each task's prompt and context."""
    lim = current_limits()
    measure(spec, source, lim)  # refuses bombs before anything serialises them
    from pydantic_core import PydanticSerializationError

    try:
        size = len(spec.model_dump_json(exclude_unset=True).encode())
    except PydanticSerializationError as exc:  # a value only Python can hold (API callers)
        first = str(exc).splitlines()[0] if str(exc) else "not JSON"
        raise SpecError(f"{source}: cannot be sent to a run as JSON: {first}") from None
    if size > lim.spec_bytes:
        raise over(source, f"{size:,} bytes as JSON (sub-workflows inlined)", "max_spec_bytes",
                   lim.spec_bytes)
    _check_tasks(spec, lim)


def _check_tasks(spec: Any, lim: Limits) -> None:
    for task in spec.tasks:
        who = f"task {task.name!r}"
        if len(task.prompt) > lim.prompt_chars:
            raise over(who, f"prompt of {len(task.prompt):,} characters", "max_prompt_chars",
                       lim.prompt_chars)
        check_context(task.context, who, lim)
        if isinstance(task.workflow, BaseModel):
            _check_tasks(task.workflow, lim)
