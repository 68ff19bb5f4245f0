"""Running a :class:`~bankhub.protocol.streams.StreamFollower`'s fetches: the I/O half.

The follower decides what to deliver and what to read; :func:`fill` reads it, feeds the
rows back, hands over what comes out, and goes on while a hole stays open. A retry waits
:func:`retry_delay` first (doubling from :data:`FILL_RETRY_MIN` up to :data:`FILL_RETRY_MAX`),
so storage that is down or behind the signals is not hammered and items wait in the
follower meanwhile. Messages (per connection), official-account notices (per node) and
alerts (per connection) all fill their gaps this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from ..protocol.streams import Fetch, StreamFollower

__all__ = ["FILL_RETRY_MIN", "FILL_RETRY_MAX", "Tasks", "fill", "retry_delay"]

T = TypeVar("T")

FILL_RETRY_MIN, FILL_RETRY_MAX = 0.05, 1.0
"""Seconds before a gap fill is tried again while the hole stays open (doubling, capped)."""


def retry_delay(attempt: int) -> float:
    """Seconds to wait before try number ``attempt + 1`` of a fill (``attempt`` >= 1)."""
    return min(FILL_RETRY_MAX, FILL_RETRY_MIN * 2.0 ** (attempt - 1))


async def fill(
    follower: StreamFollower[T],
    fetch: Fetch,
    read: Callable[[Fetch], Awaitable[Sequence[T]]],
    hand_over: Callable[[list[T]], None],
    failed: Callable[[Fetch], None],
    stopped: Callable[[], bool] | None = None,
) -> None:
    """Run ``fetch`` and every fetch the follower asks for after it, until none is left.

    ``read`` reads a range from storage; ``hand_over`` gets the items to deliver, in order;
    ``failed`` is told of a read that raised (to log it; the follower decides the retry).
    ``stopped`` (checked before each read) ends the fill early: the reader went away.
    """
    todo: Fetch | None = fetch
    while todo is not None:
        if todo.attempt:
            await asyncio.sleep(retry_delay(todo.attempt))
        if stopped is not None and stopped():
            return
        try:
            rows = await read(todo)
        except Exception:
            failed(todo)
            step = follower.failed(todo)
        else:
            step = follower.filled(todo, rows)
        if step.deliver:
            hand_over(step.deliver)
        todo = step.fetch


class Tasks:
    """The background tasks of one owner (a connection, the node's notice fan-out).

    The event loop keeps only weak references to tasks: this set keeps each one alive
    until it ends, and lets the owner cancel what is left when it closes.
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def running(self) -> list[asyncio.Task[None]]:
        return [t for t in self._tasks if not t.done()]

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
