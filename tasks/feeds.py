"""Feeds: items handed from one part of a flow run to another while both run, by key.

A streamed plan crosses two Prefect boundaries: the planner is a task, the round that runs the
plan is a subflow, and neither can take a live queue as a parameter (parameters are stored,
hashed into cache keys and shown in the UI). Both run on the flow's own event loop in the flow's
process, so they pass a feed's *key*, a string, and look the feed up here. Its producer
closes it (its consumer then reads `None` after the last item, even when it looks the feed up
only after that) and forgets it once the consumer is done.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

_feeds: dict[str, Feed] = {}


class Feed:
    """An ordered stream of items with an end (see module docstring)."""

    def __init__(self) -> None:
        self.key = uuid.uuid4().hex
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False

    def put(self, item: Any) -> None:
        if self.closed:
            raise RuntimeError("put on a closed feed")
        self._queue.put_nowait(item)

    def close(self) -> None:
        """No more items: the consumer reads `None` after the last one."""
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)

    def forget(self) -> None:
        """Closed and no longer found by its key (the consumer is done with it)."""
        self.close()
        _feeds.pop(self.key, None)

    def ready(self) -> bool:
        """An item (or the end) can be read without waiting."""
        return not self._queue.empty()

    async def get(self) -> Any:
        """The next item; None once the feed is closed and read to the end."""
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # every later read sees the end too
        return item


def open_feed() -> Feed:
    feed = Feed()
    _feeds[feed.key] = feed
    return feed


def find_feed(key: str | None) -> Feed | None:
    """The open feed of this key; None for no key, or a feed of another process (a run
    resumed elsewhere, a retried task after the flow moved on)."""
    return _feeds.get(key) if key else None
