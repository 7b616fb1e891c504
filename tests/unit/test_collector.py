"""While a workflow runs the collector is quiet (the heap before the run frozen, collections
rarer); afterwards the program's own settings are back, whatever nesting or failure."""

from __future__ import annotations

import gc

import pytest

from promptdag.engine.gc_tuning import RUN_THRESHOLDS, quiet_collector


def test_a_run_freezes_the_heap_and_puts_everything_back_at_the_end():
    gc.set_threshold(700, 10, 10)
    with quiet_collector():
        assert gc.get_threshold() == RUN_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_nested_runs_leave_it_to_the_outermost():
    gc.set_threshold(500, 5, 5)
    with quiet_collector():
        with quiet_collector():  # a sub-workflow
            pass
        assert gc.get_threshold() == RUN_THRESHOLDS  # still the outer run's
    assert gc.get_threshold() == (500, 5, 5)
    gc.set_threshold(700, 10, 10)


def test_a_failed_run_restores_them_too():
    with pytest.raises(RuntimeError), quiet_collector():
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0 and gc.get_threshold() != RUN_THRESHOLDS


def test_cyclic_garbage_made_during_a_run_is_still_collected():
    class Node:
        pass

    with quiet_collector():
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        del a, b
        assert gc.collect() >= 2
