"""A plan read while it is written: each planned task the moment its JSON object is complete.

The planner answers with the plan as JSON: `{"tasks": [{...}, {...}]}` (what a server holding
the model to the plan's schema writes), or one task object per line (JSON Lines), or either in
prose or a code fence. `PlanStream` takes the answer piece by piece as it streams and hands out
every task object as soon as its closing brace arrives, whatever the layout: it tracks strings
and brackets, and an object that closes with a `name` key is a task. The wrapper object and
everything outside objects are ignored.

A malformed task never costs the tasks before it:

- a line that ends inside a string (an unescaped quote, a cut line) abandons that task only;
- an object that a new `{` interrupts (a missing `}`) is closed where it stopped and repaired;
- at the end, an object cut short (the token limit) is closed and repaired the same way;
- a task object that is not a valid task (no prompt, an empty name) is rejected with the
  reason, and reading goes on.

Pure: no I/O, no model; the planner task feeds it (tasks/plan_objective.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import ValidationError

from promptdag.engine.objective import PlannedTask


@dataclass
class _Open:
    """An open bracket: its character and where it started in the text."""

    char: str
    start: int


@dataclass
class PlanStream:
    """Incremental reader of a streamed plan (see module docstring)."""

    text: str = ""
    rejected: list[str] = field(default_factory=list)
    _pos: int = 0
    _stack: list[_Open] = field(default_factory=list)
    _in_string: bool = False
    _escaped: bool = False

    def feed(self, piece: str) -> list[PlannedTask]:
        """Read the next piece of the answer; the tasks it completed, in order."""
        self.text += piece
        found: list[PlannedTask] = []
        text = self.text
        while self._pos < len(text):
            char = text[self._pos]
            if self._in_string:
                self._string_char(char, found)
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                if char == "{" and self._stack and self._stack[-1].char == "{":
                    # a `{` where a key belongs: the open object lost its `}`
                    interrupted = self._stack.pop()
                    self._take(self._repaired(interrupted.start, self._pos), found, repaired=True)
                self._stack.append(_Open(char, self._pos))
            elif char in "}]":
                self._close(char, found)
            self._pos += 1
        return found

    def finish(self) -> list[PlannedTask]:
        """The answer is complete: tasks left open (cut by the token limit) closed and kept
        when what was written of them is a valid task."""
        found: list[PlannedTask] = []
        self._in_string = False  # a string cut short: `_repaired` drops it
        while self._stack:
            opened = self._stack.pop()
            if opened.char == "{":
                self._take(self._repaired(opened.start, len(self.text)), found, repaired=True)
        return found

    def _string_char(self, char: str, found: list[PlannedTask]) -> None:
        if self._escaped:
            self._escaped = False
        elif char == "\\":
            self._escaped = True
        elif char == '"':
            self._in_string = False
        elif char == "\n":  # JSON strings hold no raw line break: this line is malformed
            self._in_string = False
            self._abandon_line()

    def _abandon_line(self) -> None:
        """Drop the object this broken line belongs to (the innermost open `{`)."""
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index].char == "{":
                start = self._stack[index].start
                line = self.text[start:self._pos].strip().replace("\n", " ")
                self.rejected.append(f"malformed task dropped: {line[:120]}")
                del self._stack[index:]
                return

    def _close(self, char: str, found: list[PlannedTask]) -> None:
        want = "{" if char == "}" else "["
        if not self._stack or self._stack[-1].char != want:
            return  # a stray bracket outside any open one: prose around the JSON
        opened = self._stack.pop()
        if char == "}":
            self._take(self.text[opened.start:self._pos + 1], found, repaired=False)

    def _repaired(self, start: int, end: int) -> str:
        """The object from `start`, cut at `end`, closed: a dangling comma, key or string
        removed, open arrays and the object closed."""
        body = self.text[start:end].rstrip().rstrip(",")
        candidates = [body]
        cut = max(body.rfind(","), body.rfind("["))
        if cut > 0:
            candidates.append(body[:cut].rstrip(",").rstrip())
        for candidate in candidates:
            closers = _closers(candidate)
            if closers is not None:
                attempt = candidate + closers
                try:
                    json.loads(attempt)
                except ValueError:
                    continue
                return attempt
        return body

    def _take(self, raw: str, found: list[PlannedTask], repaired: bool) -> None:
        try:
            value = json.loads(raw)
        except ValueError:
            if repaired or (raw.count("{") == 1 and '"name"' in raw):  # a task, not the wrapper
                self.rejected.append(f"malformed task dropped: {_short(raw)}")
            return
        if not isinstance(value, dict) or "name" not in value:
            return  # the wrapper `{"tasks": [...]}` or an object inside a task
        try:
            task = PlannedTask.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "task"
            self.rejected.append(f"task {_short(str(value.get('name')))} rejected: {where}: "
                                 f"{first['msg']}")
            return
        if not task.name.strip() or not task.prompt.strip():
            self.rejected.append(f"task {task.name!r} rejected: an empty name or prompt")
            return
        found.append(task)


def _closers(text: str) -> str | None:
    """The brackets that close what `text` leaves open; None when it ends inside a string."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    if in_string:
        return None
    return "".join(reversed(stack))


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 120 else line[:117] + "..."
