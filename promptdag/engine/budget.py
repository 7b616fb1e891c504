"""Budgets: `max_cost_usd` and `max_total_tokens` of a run, of a batch row, of an objective.

The one place where spending is accounted before and after a call. A call first asks its
ledgers to admit its *estimate* (prompt tokens + `max_tokens`, priced as such): a ledger admits
it when what is spent, plus what calls in flight may still spend, plus this estimate stays within
its limits; otherwise no call starts and `BudgetExhausted` says which limit stopped it. When the
answer comes back, the estimate is replaced by the answer's usage (`settle`); a call that failed
keeps its estimate (it may have cost that much).

Ledgers nest: a row's ledger has the run's as parent, a round's has the objective's, and a call
is admitted only when every ledger up the chain admits it. Thread-safe (task runs may share a
process on several threads). Pure: no Prefect, no provider.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass, field

from promptdag.errors import PermanentProviderError
from promptdag.llm.base import Usage

STOP_REASON = "budget"


class BudgetExhausted(PermanentProviderError):
    """The next call could pass a budget: it does not start (never retried)."""


@dataclass
class Estimate:
    """What one call may cost, before it is made."""

    tokens: int
    cost_usd: float


@dataclass
class Ledger:
    """Spending against optional limits (see module docstring)."""

    label: str
    max_cost_usd: float | None = None
    max_total_tokens: int | None = None
    parent: Ledger | None = None
    spent: Usage = field(default_factory=Usage)
    exhausted: str | None = None  # why the last refused call was refused
    _held_tokens: int = 0
    _held_cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def limited(self) -> bool:
        return self.max_cost_usd is not None or self.max_total_tokens is not None

    def chain(self) -> list[Ledger]:
        ledgers: list[Ledger] = []
        node: Ledger | None = self
        while node is not None:
            ledgers.append(node)
            node = node.parent
        return ledgers

    def admit(self, estimate: Estimate) -> None:
        """Hold `estimate` in this ledger and its parents, or raise `BudgetExhausted` (holding
        nothing) when any of them would pass its limit."""
        chain = self.chain()
        for ledger in chain:
            ledger._lock.acquire()
        try:
            for ledger in chain:
                reason = ledger._refusal(estimate)
                if reason:
                    ledger.exhausted = reason
                    raise BudgetExhausted(reason)
            for ledger in chain:
                ledger._held_tokens += estimate.tokens
                ledger._held_cost += estimate.cost_usd
        finally:
            for ledger in reversed(chain):
                ledger._lock.release()

    def settle(self, estimate: Estimate, usage: Usage | None) -> None:
        """Replace a held estimate by what the call spent (None: a failed call keeps its
        estimate as spent, since the provider may have charged it)."""
        spent = usage if usage is not None else Usage(
            input_tokens=estimate.tokens, cost_usd=estimate.cost_usd
        )
        for ledger in self.chain():
            with ledger._lock:
                ledger._held_tokens -= estimate.tokens
                ledger._held_cost -= estimate.cost_usd
                ledger.spent = ledger.spent + spent

    def charge(self, usage: Usage) -> None:
        """Count spending that was not admitted through this ledger (e.g. an earlier round)."""
        for ledger in self.chain():
            with ledger._lock:
                ledger.spent = ledger.spent + usage

    def _refusal(self, estimate: Estimate) -> str | None:
        if self.max_total_tokens is not None:
            used = self.spent.input_tokens + self.spent.output_tokens + self._held_tokens
            if used + estimate.tokens > self.max_total_tokens:
                return (f"{self.label}: max_total_tokens {self.max_total_tokens} reached "
                        f"({used} used or in flight, the next call may take {estimate.tokens})")
        if self.max_cost_usd is not None:
            used_cost = self.spent.cost_usd + self._held_cost
            if used_cost + estimate.cost_usd > self.max_cost_usd + 1e-12:
                return (f"{self.label}: max_cost_usd {self.max_cost_usd:g} reached "
                        f"(${used_cost:.6f} spent or in flight, the next call may cost "
                        f"${estimate.cost_usd:.6f})")
        return None


_current: ContextVar[Ledger | None] = ContextVar("promptdag_budget", default=None)


def current_ledger() -> Ledger | None:
    """The ledger calls made here count against (set by the scheduler or the objective)."""
    return _current.get()


def use_ledger(ledger: Ledger | None) -> None:
    """Make `ledger` the current one for this context (an asyncio task and what it awaits)."""
    _current.set(ledger)


def ledger_for(
    label: str, max_cost_usd: float | None, max_total_tokens: int | None
) -> Ledger | None:
    """A ledger under the current one, or the current one when there are no limits of its
    own (None when nothing is limited anywhere)."""
    parent = current_ledger()
    if max_cost_usd is None and max_total_tokens is None:
        return parent
    return Ledger(label, max_cost_usd, max_total_tokens, parent=parent)
