"""Shards of a batch: the rows split into N contiguous parts, one flow run each, and the
shards' rows gathered back into one list in data order.

Pure: rows and row results in and out; `promptdag.remote.client` submits and waits.
Contiguous parts keep each row's index (`row_offset` + its position in the shard) equal to
its position in the data, so a gathered output reads like the output of one run.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from promptdag.engine.results import RowResult
from promptdag.errors import SpecError

BATCH_TAG_PREFIX = "batch:"


@dataclass(frozen=True)
class Shard:
    """One flow run's part of a batch: rows[offset : offset + len(rows)]."""

    number: int  # 1-based, as shown in run names and tags
    offset: int
    rows: list[dict[str, Any]]


def split_rows(rows: list[dict[str, Any]], shards: int) -> list[Shard]:
    """`rows` in `shards` contiguous parts whose sizes differ by at most one (fewer parts when
    there are fewer rows than shards)."""
    if shards < 1:
        raise SpecError("--shards must be at least 1")
    if not rows:
        raise SpecError("a batch needs at least one row")
    count = min(shards, len(rows))
    size, extra = divmod(len(rows), count)
    parts, start = [], 0
    for number in range(1, count + 1):
        end = start + size + (number <= extra)
        parts.append(Shard(number, start, rows[start:end]))
        start = end
    return parts


def new_batch_tag() -> str:
    """A tag every shard of one submission carries (`batch:<12 hex digits>`): the UI's tag
    filter, or a flow-run filter on it, finds the shards together."""
    return f"{BATCH_TAG_PREFIX}{secrets.token_hex(6)}"


def gather_rows(parts: list[list[RowResult]]) -> list[RowResult]:
    """The shards' rows as one list ordered by row index; SpecError when two shards report
    the same index (shards of different batches given together)."""
    rows = sorted((row for part in parts for row in part), key=lambda r: r.index)
    for before, after in pairwise(rows):
        if before.index == after.index:
            raise SpecError(f"two runs report row {after.index} (ids {before.id!r} and "
                            f"{after.id!r}): give the runs of one batch")
    return rows
