"""`when:` conditions: a tiny expression language over upstream results, never `eval`.

    when: "{{ Assess.label }} == 'complex'"
    when: "{{ Assess.confidence }} >= 0.8 and not ({{ Draft }} contains 'TODO')"

Grammar (parsed here, evaluated here; nothing from a spec reaches Python's evaluator):

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := value (("==" | "!=" | "<" | "<=" | ">" | ">=" | "contains" | "in") value)?
    value   := {{ Task }} | {{ Task.field.sub }} | 'text' | "text" | number | true | false
               | null | "(" expr ")"

`{{ Task }}` is the task's result text, `{{ Task.field }}` a field of its structured result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from promptdag.errors import SpecError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<ref>\{\{\s*[^{}]*?\s*\}\})
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<op>==|!=|<=|>=|<|>|\(|\))
      | (?P<word>[A-Za-z_]+)
    )""",
    re.VERBOSE,
)
_WORDS = {"and", "or", "not", "contains", "in", "true", "false", "null"}
_COMPARE = {"==", "!=", "<", "<=", ">", ">=", "contains", "in"}


@dataclass(frozen=True)
class Ref:
    """A reference to an upstream result: the raw text inside `{{ }}`."""

    text: str


@dataclass(frozen=True)
class Node:
    op: str
    args: tuple[Any, ...]


def _tokens(source: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if not match or match.end() == pos:
            raise SpecError(f"condition {source!r}: cannot read it at {source[pos:pos + 20]!r}")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value not in _WORDS:
            raise SpecError(
                f"condition {source!r}: unknown word {value!r}; quote text ('...') and write "
                "references as {{ Task }} or {{ Task.field }}"
            )
        out.append((kind, value))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokens(source)
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos][1] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.pos >= len(self.tokens):
            raise SpecError(f"condition {self.source!r}: ends too early")
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def parse(self) -> Any:
        if not self.tokens:
            raise SpecError("condition is empty")
        node = self._or()
        if self.pos != len(self.tokens):
            raise SpecError(f"condition {self.source!r}: unexpected {self._peek()!r}")
        return node

    def _or(self) -> Any:
        node = self._and()
        while self._peek() == "or":
            self._take()
            node = Node("or", (node, self._and()))
        return node

    def _and(self) -> Any:
        node = self._not()
        while self._peek() == "and":
            self._take()
            node = Node("and", (node, self._not()))
        return node

    def _not(self) -> Any:
        if self._peek() == "not":
            self._take()
            return Node("not", (self._not(),))
        return self._compare()

    def _compare(self) -> Any:
        left = self._value()
        if self._peek() in _COMPARE:
            op = self._take()[1]
            return Node(op, (left, self._value()))
        return left

    def _value(self) -> Any:
        kind, value = self._take()
        if kind == "ref":
            return Ref(value[2:-2].strip())
        if kind == "str":
            return re.sub(r"\\(.)", r"\1", value[1:-1])
        if kind == "num":
            return float(value) if "." in value else int(value)
        if value in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value]
        if value == "(":
            node = self._or()
            if self._take()[1] != ")":
                raise SpecError(f"condition {self.source!r}: missing ')'")
            return node
        raise SpecError(f"condition {self.source!r}: unexpected {value!r}")


def parse_condition(source: str) -> Any:
    """The condition's syntax tree; SpecError naming the problem if it cannot be read."""
    try:
        return _Parser(source).parse()
    except RecursionError:
        raise SpecError(f"condition {source[:40]!r}...: nested too deeply") from None


def references(tree: Any) -> list[Ref]:
    """Every `{{ ... }}` in a parsed condition, in order."""
    found: list[Ref] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Ref):
            found.append(node)
        elif isinstance(node, Node):
            stack.extend(reversed(node.args))
    return found


def split_reference(text: str, task_names: set[str]) -> tuple[str, list[str]] | None:
    """`Task Name.field.sub` -> ("Task Name", ["field", "sub"]): the longest task-name prefix."""
    if text in task_names:
        return text, []
    parts = text.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        if name in task_names:
            return name, parts[cut:]
    return None


def evaluate(tree: Any, resolve: Any) -> Any:
    """Evaluate a parsed condition; `resolve(ref_text)` gives a referenced value."""
    if isinstance(tree, Ref):
        return resolve(tree.text)
    if not isinstance(tree, Node):
        return tree
    if tree.op == "and":
        return bool(evaluate(tree.args[0], resolve)) and bool(evaluate(tree.args[1], resolve))
    if tree.op == "or":
        return bool(evaluate(tree.args[0], resolve)) or bool(evaluate(tree.args[1], resolve))
    if tree.op == "not":
        return not evaluate(tree.args[0], resolve)
    left, right = (evaluate(arg, resolve) for arg in tree.args)
    return _compare(tree.op, left, right)


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "contains":
        return str(right).lower() in str(left).lower()
    if op == "in":
        if isinstance(right, (list, dict)):
            return any(_loose(left) == _loose(item) for item in right)
        return str(left).strip().lower() in str(right).lower()
    if op in ("==", "!="):
        equal = _loose(left) == _loose(right)
        return equal if op == "==" else not equal
    try:
        a, b = float(left), float(right)
    except (TypeError, ValueError):
        return False  # comparing text with numbers is simply false, never an error mid-run
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _loose(value: Any) -> Any:
    """Text from a model compares case- and space-insensitively; numbers as numbers."""
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            return text.lower()
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return value
